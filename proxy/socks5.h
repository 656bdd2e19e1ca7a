/* socks5: a pure SOCKS5 (RFC 1928) and username/password (RFC 1929) codec.
 *
 * No I/O, no allocation, no global state: every parser reads only
 * buf[0..len) and every writer writes only into the caller's buffer, so the
 * codec can be driven by any event loop and fuzzed on its own.
 *
 * Parsers share one shape:
 *
 *   int socks5_parse_X(const uint8_t *buf, size_t len, size_t *consumed,
 *                      struct X *out);
 *
 * and return SOCKS5_NEED_MORE (buf holds a strict prefix of a message; call
 * again with more bytes), SOCKS5_OK (*consumed = the message's length; bytes
 * after it belong to the next message) or SOCKS5_ERROR (out->err says why and
 * exactly what to send before closing). *consumed is written only on OK.
 *
 * Leniency, chosen to match what clients send in practice:
 * - RSV of a request or reply may hold any value (RFC 1928 says X'00').
 * - PLEN 0 is accepted (RFC 1929 says 1..255; Exim sends it when no password
 *   is configured); the password check then decides.
 * - An auth status reply with VER 5 instead of 1 is accepted (some servers).
 */
#ifndef SOCKPOOL_SOCKS5_H
#define SOCKPOOL_SOCKS5_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define SOCKS5_VERSION	    0x05
#define SOCKS5_AUTH_VERSION 0x01

/* Authentication methods (greeting). */
#define SOCKS5_METHOD_NONE	   0x00
#define SOCKS5_METHOD_GSSAPI	   0x01
#define SOCKS5_METHOD_PASSWORD	   0x02
#define SOCKS5_METHOD_UNACCEPTABLE 0xFF

/* Commands. */
#define SOCKS5_CMD_CONNECT	 0x01
#define SOCKS5_CMD_BIND		 0x02
#define SOCKS5_CMD_UDP_ASSOCIATE 0x03

/* Address types. */
#define SOCKS5_ATYP_IPV4   0x01
#define SOCKS5_ATYP_DOMAIN 0x03
#define SOCKS5_ATYP_IPV6   0x04

/* Reply codes (REP). */
#define SOCKS5_REP_SUCCEEDED	      0x00
#define SOCKS5_REP_GENERAL_FAILURE    0x01
#define SOCKS5_REP_NOT_ALLOWED	      0x02
#define SOCKS5_REP_NET_UNREACHABLE    0x03
#define SOCKS5_REP_HOST_UNREACHABLE   0x04
#define SOCKS5_REP_CONN_REFUSED	      0x05
#define SOCKS5_REP_TTL_EXPIRED	      0x06
#define SOCKS5_REP_CMD_NOT_SUPPORTED  0x07
#define SOCKS5_REP_ATYP_NOT_SUPPORTED 0x08

/* RFC 1929 status: 0 = success, anything else = failure. */
#define SOCKS5_AUTH_STATUS_OK	0x00
#define SOCKS5_AUTH_STATUS_FAIL 0x01

/* Largest message of each kind, for sizing buffers. */
#define SOCKS5_GREETING_MAX (2 + 255)
#define SOCKS5_AUTH_MAX	    (3 + 255 + 255)
#define SOCKS5_REQUEST_MAX  (4 + 1 + 255 + 2) /* also the largest reply */
#define SOCKS5_REPLY_MAX    SOCKS5_REQUEST_MAX

/* Longest text socks5_addr_str() writes, NUL included ("[v6]:port" or a
 * 255-byte name with ":port"). */
#define SOCKS5_ADDR_STRLEN (255 + 1 + 5 + 1)

enum socks5_result {
	SOCKS5_ERROR = -1,
	SOCKS5_NEED_MORE = 0,
	SOCKS5_OK = 1,
};

/* Why a parse failed; for logs (socks5_fault_str). */
enum socks5_fault {
	SOCKS5_FAULT_NONE = 0,
	SOCKS5_FAULT_VERSION,	 /* VER is not 5 (1 for the auth sub-negotiation) */
	SOCKS5_FAULT_NMETHODS,	 /* greeting with NMETHODS 0 */
	SOCKS5_FAULT_ULEN,	 /* auth request with ULEN 0 */
	SOCKS5_FAULT_USER_NUL,	 /* NUL byte inside the username */
	SOCKS5_FAULT_COMMAND,	 /* CMD other than CONNECT or BIND */
	SOCKS5_FAULT_ATYP,	 /* ATYP other than 1, 3, 4 */
	SOCKS5_FAULT_DOMAIN_LEN, /* DOMAIN with length 0 */
	SOCKS5_FAULT_DOMAIN_NUL, /* NUL byte inside the DOMAIN name */
};

/* What to do when a parser returns SOCKS5_ERROR.
 * send_reply false: close without writing anything.
 * send_reply true: write the one reply of the message's kind, then close:
 *   greeting     -> socks5_write_method(out, code)           (code 0xFF)
 *   auth request -> socks5_write_auth_status(out, false)     (code 0x01)
 *   request      -> socks5_write_reply_atyp(out, cap, code, req->dst.atyp, NULL)
 * Parsers of replies (client side) never ask for a reply. */
struct socks5_error {
	enum socks5_fault fault;
	bool send_reply;
	uint8_t code;
};

/* An address as it travels in a request or reply. Multi-byte values are in
 * host order except the address bytes, which are in network order. */
struct socks5_addr {
	uint8_t atyp;	    /* SOCKS5_ATYP_* */
	uint8_t domain_len; /* DOMAIN: 1..255 */
	uint16_t port;	    /* host order */
	union {
		uint8_t ipv4[4];
		uint8_t ipv6[16];
		char domain[256]; /* NUL-terminated, contains no other NUL */
	} u;
};

/* Server side: parse what a client sends. */

struct socks5_greeting {
	uint8_t nmethods; /* 1..255 */
	uint8_t methods[255];
	struct socks5_error err;
};

/* Greeting: VER=5 NMETHODS METHODS.
 * Errors: VER != 5 -> close silently (not a SOCKS5 client; a SOCKS4 client
 * would not understand a method reply); NMETHODS 0 -> send METHOD 0xFF. */
int socks5_parse_greeting(const uint8_t *buf, size_t len, size_t *consumed,
			  struct socks5_greeting *out);

/* The method to answer a parsed greeting with: PASSWORD when want_password
 * and offered, NONE when !want_password and offered, else UNACCEPTABLE (the
 * caller sends it and closes). A client that offers only PASSWORD to a
 * server without auth is refused, not waved through. */
uint8_t socks5_choose_method(const struct socks5_greeting *greeting, bool want_password);

/* RFC 1929 request. Holds a password: the caller should clear it
 * (explicit_bzero) once checked. */
struct socks5_auth {
	uint8_t ulen;	/* 1..255 */
	uint8_t plen;	/* 0..255 */
	char user[256]; /* NUL-terminated, no NUL inside */
	char pass[256]; /* NUL-terminated after plen bytes; may contain NUL */
	struct socks5_error err;
};

/* Auth request: VER=1 ULEN UNAME PLEN PASSWD.
 * Errors (all send status failure): VER != 1, ULEN 0, NUL in UNAME. */
int socks5_parse_auth(const uint8_t *buf, size_t len, size_t *consumed, struct socks5_auth *out);

struct socks5_request {
	uint8_t cmd; /* SOCKS5_CMD_CONNECT or SOCKS5_CMD_BIND on OK */
	struct socks5_addr dst;
	struct socks5_error err;
};

/* Request: VER=5 CMD RSV ATYP DST.ADDR DST.PORT.
 * On OK cmd is CONNECT or BIND; UDP ASSOCIATE is refused here.
 * Errors, each with the REP to send (dst.atyp is the request's ATYP when it
 * is a known one, else IPv4, so the error reply has the request's shape):
 *   VER != 5                         -> 0x01 (detected at once)
 *   ATYP not 1/3/4                   -> 0x08 (detected at once)
 *   DOMAIN length 0, NUL in the name -> 0x04: a name that cannot resolve
 *                                        gets the DNS-failure code (SPEC 5)
 *   CMD not 1/2 (UDP ASSOCIATE too)  -> 0x07 (once the whole request is in,
 *                                        so the reply matches its length) */
int socks5_parse_request(const uint8_t *buf, size_t len, size_t *consumed,
			 struct socks5_request *out);

/* Server side: build what a server sends. */

/* METHOD selection reply: 05 method. @return 2. out needs 2 bytes. */
size_t socks5_write_method(uint8_t *out, uint8_t method);

/* RFC 1929 status reply: 01 00 (ok) or 01 01. @return 2. */
size_t socks5_write_auth_status(uint8_t *out, bool ok);

/* Reply VER REP RSV=0 ATYP BND.ADDR BND.PORT in the address type of bnd:
 * AF_INET -> IPv4, AF_INET6 -> IPv6, v4-mapped IPv6 -> IPv4, NULL ->
 * 0.0.0.0:0. @return the length written (10 or 22), -ENOBUFS if cap is too
 * small, -EAFNOSUPPORT for another family. */
int socks5_write_reply(uint8_t *out, size_t cap, uint8_t rep, const struct sockaddr *bnd);

/* Same, but always in address type atyp, so a reply has the shape of the
 * request it answers (SPEC 5, Exim reads exactly the request's length):
 *   IPv4:   bnd's IPv4 (v4-mapped unmapped); an IPv6 bnd or NULL -> 0.0.0.0,
 *           port kept
 *   IPv6:   bnd's IPv6; an IPv4 bnd is written v4-mapped; NULL -> [::]:0
 *   DOMAIN: the text of bnd's IP ("192.0.2.10", "2001:db8::1") as the name,
 *           NULL -> "0.0.0.0"; BND.ADDR stays the real bound address
 * @return length, -ENOBUFS, -EAFNOSUPPORT, -EINVAL for an unknown atyp. */
int socks5_write_reply_atyp(uint8_t *out, size_t cap, uint8_t rep, uint8_t atyp,
			    const struct sockaddr *bnd);

/* Client side (sockpool -> upstream SOCKS5 proxy). */

/* Greeting offering NONE and/or PASSWORD (at least one).
 * @return length (3 or 4; out needs 4 bytes), -EINVAL if neither. */
int socks5_write_greeting(uint8_t *out, bool offer_none, bool offer_password);

/* Auth request. user: 1..255 bytes, no NUL; pass: 0..255 bytes.
 * @return length (3 + ulen + plen), -EINVAL, -ENOBUFS. */
int socks5_write_auth(uint8_t *out, size_t cap, const char *user, size_t ulen, const char *pass,
		      size_t plen);

/* Request VER=5 cmd RSV=0 dst. cmd is any byte (the server decides);
 * dst must be a valid IPv4/IPv6/DOMAIN (1..255 bytes, no NUL) address.
 * @return length, -EINVAL, -ENOBUFS. */
int socks5_write_request(uint8_t *out, size_t cap, uint8_t cmd, const struct socks5_addr *dst);

struct socks5_method_reply {
	uint8_t method; /* may be 0xFF: the server refused every method */
	struct socks5_error err;
};

/* METHOD selection reply. Error: VER != 5. */
int socks5_parse_method_reply(const uint8_t *buf, size_t len, size_t *consumed,
			      struct socks5_method_reply *out);

struct socks5_auth_reply {
	uint8_t status; /* 0 = success */
	struct socks5_error err;
};

/* RFC 1929 status reply. Error: VER other than 1 (or 5, see above). */
int socks5_parse_auth_reply(const uint8_t *buf, size_t len, size_t *consumed,
			    struct socks5_auth_reply *out);

struct socks5_reply {
	uint8_t rep; /* REP as received; non-zero is still SOCKS5_OK */
	struct socks5_addr bnd;
	struct socks5_error err;
};

/* Reply VER REP RSV ATYP BND.ADDR BND.PORT. Errors: VER != 5, ATYP not
 * 1/3/4, DOMAIN length 0 or with NUL. */
int socks5_parse_reply(const uint8_t *buf, size_t len, size_t *consumed, struct socks5_reply *out);

/* Addresses and names. */

/* Fill a socks5_addr from an AF_INET/AF_INET6 sockaddr (port included);
 * v4-mapped IPv6 stays IPv6. @return 0, -EAFNOSUPPORT. */
int socks5_addr_from_sockaddr(struct socks5_addr *out, const struct sockaddr *sa);

/* Convert an IPv4/IPv6 socks5_addr to a sockaddr (sockaddr_in/_in6).
 * @return 0 with *salen set, -EINVAL for DOMAIN or unknown atyp. */
int socks5_addr_to_sockaddr(const struct socks5_addr *a, struct sockaddr_storage *ss,
			    socklen_t *salen);

/* "1.2.3.4:80", "[::1]:80", "example.org:25" into buf (SOCKS5_ADDR_STRLEN
 * is always enough). @return buf. */
const char *socks5_addr_str(const struct socks5_addr *a, char *buf, size_t len);

/* Static text for a REP code ("connection refused"), never NULL. */
const char *socks5_rep_str(uint8_t rep);

/* Static text for a fault, never NULL. */
const char *socks5_fault_str(enum socks5_fault fault);

#endif

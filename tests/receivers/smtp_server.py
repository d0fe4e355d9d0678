"""A real SMTP server for canaryd's email receiver tests: aiosmtpd on 127.0.0.1 with STARTTLS
(required before AUTH and MAIL) and AUTH PLAIN/LOGIN against one user name and password.

    python smtp_server.py PORT CERT KEY USER PASSWORD_FILE OUT_DIR

Every accepted mail is written to OUT_DIR as NNNN.eml (the message as received) and NNNN.json
(envelope sender and recipients, the authenticated user, whether the session was TLS, and
the decoded subject, text part and HTML part). The
file OUT_DIR/mode, when present, makes RCPT answer with its content (e.g. "450 4.2.1 Mailbox
busy" or "550 5.1.1 No such user"); absent or "accept", RCPT is accepted. Prints READY when it
accepts connections; exits when its stdin closes.
"""

import email
import email.policy
import json
import os
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, cert, key, user, password_file, out = sys.argv[1:7]
with open(password_file, "rb") as f:
    password = f.read()


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == user.encode()
        and auth_data.password == password
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


class Handler:
    count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        try:
            with open(os.path.join(out, "mode")) as f:
                mode = f.read().strip()
        except FileNotFoundError:
            mode = "accept"
        if mode != "accept":
            return mode
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        Handler.count += 1
        base = os.path.join(out, "%04d" % Handler.count)
        content = envelope.original_content or envelope.content
        with open(base + ".eml.tmp", "wb") as f:
            f.write(content)
        msg = email.message_from_bytes(content, policy=email.policy.default)
        text = msg.get_body(("plain",))
        html = msg.get_body(("html",))
        with open(base + ".json.tmp", "w") as f:
            json.dump(
                {
                    "subject": str(msg["subject"]),
                    "content_type": msg.get_content_type(),
                    "text": text.get_content() if text is not None else None,
                    "html": html.get_content() if html is not None else None,
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": envelope.rcpt_tos,
                    "auth_user": session.auth_data.login.decode(errors="replace")
                    if isinstance(session.auth_data, LoginPassword)
                    else None,
                    "tls": session.ssl is not None,
                },
                f,
            )
        os.rename(base + ".eml.tmp", base + ".eml")
        os.rename(base + ".json.tmp", base + ".json")
        return "250 2.0.0 Message accepted for delivery"


ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
controller = Controller(
    Handler(),
    hostname="127.0.0.1",
    port=int(port),
    tls_context=ctx,
    require_starttls=True,
    auth_require_tls=True,
    auth_required=True,
    authenticator=authenticator,
    decode_data=False,
)
controller.start()
print("READY", flush=True)
sys.stdin.read()
controller.stop()

"""``inspector review``: the review station, a web application in which people answer for the audit folder's frames.

Binds 127.0.0.1 unless ``--host`` says otherwise (a wider address is the operator's choice; without a token anyone
who reaches the port can read the frames and answer, so a warning says so). Prints the URL to open (the login link
when a token is set) and serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from inspector.cli.args import PORT, existing

TOKEN_ENV = "INSPECTOR_REVIEW_TOKEN"


def run(args: argparse.Namespace) -> None:
    existing(args.audit, "audit folder", folder=True)
    existing(args.token_file, "--token-file file")
    from inspector.service.security import read_secret

    token = read_secret(args.token_file, TOKEN_ENV)
    from inspector.review.server import is_loopback, review_server

    if token is None and not is_loopback(args.host):
        print(f"inspector review: warning: serving on {args.host} without a token: anyone who reaches this port can "
              f"see the frames and answer; give --token-file", file=sys.stderr)
    server = review_server(Path(args.audit), args.host, args.port, token)
    print(server.login_url(token) if token else server.url, flush=True)
    print("inspector review: open the URL above in a browser; Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it caught once it has shut down
        pass


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("review", help="the review station: answer for audit frames in a browser")
    p.add_argument("--audit", required=True, help="the service's --audit-dir")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=PORT, default=8080, help="default 8080; 0 picks a free port")
    p.add_argument("--token-file", dest="token_file",
                   help=f"file holding the token every request needs (else ${TOKEN_ENV}; none: open)")
    p.set_defaults(func=run)

"""A local web page over a store: drop a photo (or type an observation id), optionally
with its date, place, substrate and habitat, and see the answer of the decision rule
(species, "unknown species" or a poison-risk warning), the poison probability and the
reason, the top-5 species, and the most similar training observations with their
photos, filtered as `sporeprint search` filters. A JSON API (POST /api/identify,
GET /api/search, GET /api/info) serves scripts. The store is opened read-only; the
server listens on 127.0.0.1 unless --host says otherwise. See docs/serve.md."""

from __future__ import annotations

HELP = "local web page and JSON API: photo in, answer, poison risk and look-alikes out"
EXAMPLE = "sporeprint serve --store demo-run/fungi.duckdb --port 8000"


def add_arguments(parser) -> None:
    parser.add_argument("--store", required=True, help="the store (DuckDB file), opened read-only")
    parser.add_argument("--run", default=None,
                        help="run id(s), comma-separated: fold heads or an ensemble run "
                             "(default: the latest trained ensemble; none: search only)")
    parser.add_argument("--space", default=None,
                        help="embedding space for search when the store has no trained heads")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on; anything but a loopback address lets "
                             "other machines use the page")
    parser.add_argument("--port", type=int, default=8000, help="TCP port")
    parser.add_argument("--max-upload-mb", type=float, default=20.0,
                        help="largest photo upload accepted, in MB")
    parser.add_argument("--max-pixels", type=int, default=40_000_000,
                        help="largest photo accepted, in pixels (width x height)")


def run(args) -> int:
    import uvicorn

    from sporeprint.errors import CommandError
    from sporeprint.serve import Limits, Service, create_app
    from sporeprint.serve.app import LOOPBACK

    if not 0 < args.port < 65536:
        raise CommandError(f"--port {args.port} is not a TCP port (1..65535)")
    if args.max_upload_mb <= 0 or args.max_pixels <= 0:
        raise CommandError("--max-upload-mb and --max-pixels must be positive")
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                    max_pixels=args.max_pixels)
    service = Service(args.store, run=args.run, space=args.space, limits=limits)
    try:
        app = create_app(service, host=args.host)
        shown = f"[{args.host}]" if ":" in args.host else args.host
        print(f"sporeprint serve: http://{shown}:{args.port}/  (store {args.store}, "
              f"read-only; Ctrl+C stops)", flush=True)
        if args.host not in LOOPBACK:
            print(f"warning: listening on {args.host}: other machines can reach this page",
                  flush=True)
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                    server_header=False, proxy_headers=False)
    finally:
        service.close()
    return 0

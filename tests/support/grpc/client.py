"""The gRPC client of tests/grpc.rs (PyPI grpcio). One JSON line per call on stdout.

  client.py --stubs DIR --target HOST:PORT [--ca PEM] [--token T] SCENARIO [ARGS]

Scenarios:
  calls            unary, server-streaming, client-streaming and bidi calls
  unary [SLEEP_MS] [TIMEOUT_S]
                   one unary call
  big COUNT SIZE STALL_S
                   a server stream of COUNT messages of SIZE bytes; reads one, prints
                   {"stalled": true}, waits STALL_S seconds, then reads the rest
"""
import argparse
import json
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--stubs", required=True)
ap.add_argument("--target", required=True)
ap.add_argument("--ca")
ap.add_argument("--token")
ap.add_argument("scenario")
ap.add_argument("rest", nargs="*")
args = ap.parse_args()
sys.path.insert(0, args.stubs)

import grpc  # noqa: E402
import echo_pb2  # noqa: E402
import echo_pb2_grpc  # noqa: E402

opts = [("grpc.max_receive_message_length", 16 * 1024 * 1024)]
if args.ca:
    with open(args.ca, "rb") as f:
        channel = grpc.secure_channel(args.target, grpc.ssl_channel_credentials(f.read()), opts)
else:
    channel = grpc.insecure_channel(args.target, opts)
stub = echo_pb2_grpc.EchoStub(channel)
md = [("authorization", f"Bearer {args.token}")] if args.token else []
# Forged identity: the proxy must replace it.
md += [("x-forwarded-user", "mallory"), ("x-forwarded-roles", "superuser")]


def out(**kw):
    print(json.dumps(kw), flush=True)


def failed(name, e):
    out(call=name, code=e.code().name, details=e.details(),
        trailing={k: v for k, v in (e.trailing_metadata() or ()) if not k.endswith("-bin")})


def trailing(call):
    return {k: (v.hex() if k.endswith("-bin") else v) for k, v in call.trailing_metadata()}


def unary(sleep_ms=0, timeout=None):
    try:
        reply, call = stub.Who.with_call(
            echo_pb2.Req(text="hi", sleep_ms=sleep_ms), metadata=md, timeout=timeout)
        out(call="unary", code="OK", text=reply.text, metadata=json.loads(reply.metadata_json),
            time_remaining=reply.time_remaining, trailing=trailing(call))
    except grpc.RpcError as e:
        failed("unary", e)


if args.scenario == "calls":
    unary()
    try:
        it = stub.Stream(echo_pb2.Req(count=5, size=10), metadata=md)
        n = sum(len(c.data) for c in it)
        out(call="server_stream", code="OK", total=n, trailing=trailing(it))
    except grpc.RpcError as e:
        failed("server_stream", e)
    try:
        reply, call = stub.Sum.with_call(
            iter([echo_pb2.Chunk(data=b"a" * 100) for _ in range(7)]), metadata=md)
        out(call="client_stream", code="OK", total=reply.total,
            metadata=json.loads(reply.metadata_json), trailing=trailing(call))
    except grpc.RpcError as e:
        failed("client_stream", e)
    try:
        it = stub.Chat(iter([echo_pb2.Chunk(data=w) for w in (b"one", b"two", b"three")]), metadata=md)
        words = [c.data.decode() for c in it]
        out(call="bidi", code="OK", words=words)
    except grpc.RpcError as e:
        failed("bidi", e)
elif args.scenario == "unary":
    sleep_ms = int(args.rest[0]) if args.rest else 0
    timeout = float(args.rest[1]) if len(args.rest) > 1 else None
    unary(sleep_ms, timeout)
elif args.scenario == "big":
    count, size, stall = int(args.rest[0]), int(args.rest[1]), float(args.rest[2])
    try:
        it = stub.Stream(echo_pb2.Req(count=count, size=size), metadata=md)
        total = len(next(it).data)
        out(stalled=True)
        time.sleep(stall)
        for c in it:
            total += len(c.data)
        out(call="big", code="OK", total=total, trailing=trailing(it))
    except grpc.RpcError as e:
        failed("big", e)
else:
    sys.exit(f"unknown scenario {args.scenario}")

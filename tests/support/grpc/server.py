"""The gRPC upstream of tests/grpc.rs (PyPI grpcio). Stubs are compiled from echo.proto at
test time into the directory given by --stubs. Prints "READY <port>" once serving.

  server.py --stubs DIR [--tls CERT KEY]
"""
import argparse
import json
import sys
import time
from concurrent import futures

ap = argparse.ArgumentParser()
ap.add_argument("--stubs", required=True)
ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
args = ap.parse_args()
sys.path.insert(0, args.stubs)

import grpc  # noqa: E402
import echo_pb2  # noqa: E402
import echo_pb2_grpc  # noqa: E402


def seen(context):
    return json.dumps({k: v for k, v in context.invocation_metadata() if not k.endswith("-bin")})


class Echo(echo_pb2_grpc.EchoServicer):
    def Who(self, request, context):
        if request.sleep_ms:
            time.sleep(request.sleep_ms / 1000)
        context.set_trailing_metadata(
            (("x-trailer", "kept"), ("x-trailer-bin", b"\x00\x01"), ("set-cookie", "portcullis=planted"))
        )
        remaining = context.time_remaining()
        return echo_pb2.Reply(
            text=request.text,
            metadata_json=seen(context),
            time_remaining=-1 if remaining is None else remaining,
        )

    def Stream(self, request, context):
        chunk = echo_pb2.Chunk(data=b"x" * request.size)
        for _ in range(request.count):
            yield chunk
        context.set_trailing_metadata((("x-trailer", "stream-end"),))

    def Sum(self, request_iterator, context):
        total = sum(len(c.data) for c in request_iterator)
        context.set_trailing_metadata((("x-trailer", "sum-end"),))
        return echo_pb2.Reply(total=total, metadata_json=seen(context))

    def Chat(self, request_iterator, context):
        for c in request_iterator:
            yield echo_pb2.Chunk(data=c.data.upper())


server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
echo_pb2_grpc.add_EchoServicer_to_server(Echo(), server)
if args.tls:
    with open(args.tls[0], "rb") as c, open(args.tls[1], "rb") as k:
        creds = grpc.ssl_server_credentials([(k.read(), c.read())])
    port = server.add_secure_port("127.0.0.1:0", creds)
else:
    port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(f"READY {port}", flush=True)
server.wait_for_termination()

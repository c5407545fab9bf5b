"""An internal gRPC client of tool-service, both ways a caller proves itself:
a user's token, and a service certificate over mutual TLS.

Run from the repository's root, with tool-service serving TLS at
$TOOL_SERVICE (default localhost:50051), its certificates in certs/ (made
by `taskagent certs --out certs`) and a user's token in $TOKEN.
"""

import glob
import importlib.resources
import os
import sys
import tempfile

import grpc
from grpc_tools import protoc

# Python stubs for the contract, made from proto/ into a temporary folder.
stubs = tempfile.mkdtemp()
well_known = str(importlib.resources.files("grpc_tools") / "_proto")
protoc.main(["protoc", "-Iproto", f"-I{well_known}", f"--python_out={stubs}",
             f"--grpc_python_out={stubs}", *glob.glob("proto/taskagent/v1/*.proto")])
sys.path.insert(0, stubs)
from taskagent.v1 import tasks_pb2, tasks_pb2_grpc  # noqa: E402

address = os.environ.get("TOOL_SERVICE", "localhost:50051")
ca = open("certs/ca.pem", "rb").read()

# 1. For a user, with the user's token: the token's subject is the user.
with grpc.secure_channel(address, grpc.ssl_channel_credentials(ca)) as channel:
    tasks = tasks_pb2_grpc.TaskServiceStub(channel)
    token = [("authorization", f"Bearer {os.environ['TOKEN']}")]
    task = tasks.CreateTask(tasks_pb2.CreateTaskRequest(title="Buy milk"), metadata=token)
    print(f"created task {task.id}: {task.title}")

# 2. As a trusted service, with a certificate of the same CA: it names the
#    user in x-user-id (as the gateway and agent-service do).
key, cert = open("certs/gateway.key", "rb").read(), open("certs/gateway.pem", "rb").read()
with grpc.secure_channel(address, grpc.ssl_channel_credentials(ca, key, cert)) as channel:
    tasks = tasks_pb2_grpc.TaskServiceStub(channel)
    listed = tasks.ListTasks(tasks_pb2.ListTasksRequest(), metadata=[("x-user-id", "alice")])
    print("alice's tasks:", [t.title for t in listed.tasks])

# 3. No proof at all: refused, with the reason in the status details.
with grpc.secure_channel(address, grpc.ssl_channel_credentials(ca)) as channel:
    try:
        tasks_pb2_grpc.TaskServiceStub(channel).ListTasks(
            tasks_pb2.ListTasksRequest(), metadata=[("x-user-id", "alice")])
    except grpc.RpcError as error:
        print("without proof:", error.code().name, error.details())

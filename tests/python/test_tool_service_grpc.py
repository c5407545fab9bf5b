"""tool-service seen by a foreign client: Python grpcio.

Starts the real tool-service binary (TOOL_SERVICE_BIN, default
target/debug/tool-service) on a fresh SQLite file and checks the standard
gRPC services: health for "" and each service name, reflection v1 and
v1alpha, and a CreateTask call built only from what reflection returns.
"""

import subprocess

import grpc
import pytest
from support import binary, free_port
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

BINARY = binary("tool-service")
SERVICES = ["taskagent.v1.TaskService", "taskagent.v1.ConversationService"]



@pytest.fixture(scope="module")
def channel(tmp_path_factory):
    db = tmp_path_factory.mktemp("db") / "tasks.db"
    addr = f"127.0.0.1:{free_port()}"
    env = {"DATABASE_URL": f"sqlite://{db}", "TOOL_SERVICE_ADDR": addr, "LOG_LEVEL": "warn"}
    server = subprocess.Popen([BINARY], env=env)
    chan = grpc.insecure_channel(addr)
    try:
        grpc.channel_ready_future(chan).result(timeout=20)
        yield chan
    finally:
        chan.close()
        server.terminate()
        assert server.wait(timeout=20) == 0, "tool-service exits 0 on SIGTERM"


@pytest.mark.parametrize("service", ["", *SERVICES])
def test_health_check_is_serving(channel, service):
    stub = health_pb2_grpc.HealthStub(channel)
    response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_health_check_of_unknown_service_is_not_found(channel):
    stub = health_pb2_grpc.HealthStub(channel)
    with pytest.raises(grpc.RpcError) as error:
        stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_lists_services(channel, version):
    # v1 and v1alpha messages are identical on the wire; only the path differs.
    call = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    responses = list(call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5))
    names = {s.name for s in responses[0].list_services_response.service}
    assert set(SERVICES) <= names
    assert "grpc.health.v1.Health" in names
    assert "taskagent.v1.AgentService" not in names, "only the services this server runs"


def test_create_task_through_reflection(channel):
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    method = pool.FindServiceByName("taskagent.v1.TaskService").methods_by_name["CreateTask"]
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    create = channel.unary_unary(
        "/taskagent.v1.TaskService/CreateTask",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    task = create(
        request_class(title="  Buy groceries  ", description="from Python"),
        metadata=[("x-user-id", "python-user")],
        timeout=5,
    )
    assert task.id > 0
    assert task.title == "Buy groceries"
    assert task.description == "from Python"
    assert not task.completed

    with pytest.raises(grpc.RpcError) as error:
        create(request_class(title="x" * 201), metadata=[("x-user-id", "python-user")], timeout=5)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details() == "Title exceeds 200 characters"
    # Its google.rpc.ErrorInfo is readable with what reflection describes.
    details = dict(error.value.trailing_metadata())["grpc-status-details-bin"]
    status = message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.Status")).FromString(details)
    error_info = message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.ErrorInfo"))()
    assert status.details[0].Unpack(error_info)
    assert (error_info.reason, error_info.domain) == ("TITLE_TOO_LONG", "taskagent.v1")

    with pytest.raises(grpc.RpcError) as error:
        create(request_class(title="no user"), timeout=5)
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_service_this_server_does_not_run_is_unimplemented_with_a_reason(channel):
    chat = channel.unary_unary("/taskagent.v1.AgentService/Chat")
    with pytest.raises(grpc.RpcError) as error:
        chat(b"", timeout=5)
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "/taskagent.v1.AgentService/Chat" in error.value.details()
    assert "taskagent.v1.TaskService" in error.value.details()

"""agent-service seen by Python grpcio: health, reflection, and a Chat turn
with the offline model, against the real binaries (AGENT_SERVICE_BIN and
TOOL_SERVICE_BIN, default target/debug/...)."""

import os
import subprocess

import grpc
import pytest
from support import binary, free_port
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

TOOL_SERVICE = binary("tool-service")
AGENT_SERVICE = binary("agent-service")



@pytest.fixture(scope="module")
def channel(tmp_path_factory):
    db = tmp_path_factory.mktemp("db") / "tasks.db"
    tools = f"127.0.0.1:{free_port()}"
    agent = f"127.0.0.1:{free_port()}"
    common = {"LOG_LEVEL": "warn", "PATH": os.environ.get("PATH", "")}
    tool_service = subprocess.Popen(
        [TOOL_SERVICE], env={**common, "DATABASE_URL": f"sqlite://{db}", "TOOL_SERVICE_ADDR": tools}
    )
    agent_service = subprocess.Popen(
        [AGENT_SERVICE], env={**common, "AGENT_SERVICE_ADDR": agent, "TOOL_SERVICE_URL": f"http://{tools}"}
    )
    chan = grpc.insecure_channel(agent)
    try:
        grpc.channel_ready_future(chan).result(timeout=20)
        stub = health_pb2_grpc.HealthStub(chan)
        # SERVING once agent-service has seen tool-service answer.
        for response in stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=20):
            if response.status == health_pb2.HealthCheckResponse.SERVING:
                break
        yield chan
    finally:
        chan.close()
        for process in (agent_service, tool_service):
            process.terminate()
            assert process.wait(timeout=20) == 0, "exits 0 on SIGTERM"


@pytest.mark.parametrize("service", ["", "taskagent.v1.AgentService"])
def test_health_check_is_serving(channel, service):
    response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_chat_through_reflection_with_the_offline_model(channel):
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    method = pool.FindServiceByName("taskagent.v1.AgentService").methods_by_name["Chat"]
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    chat = channel.unary_unary(
        "/taskagent.v1.AgentService/Chat",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    reply = chat(request_class(message="add buy milk"), metadata=[("x-user-id", "py")], timeout=10)
    assert reply.conversation_id > 0
    assert reply.response.startswith('Added "buy milk"')
    assert [call.tool for call in reply.tool_calls] == ["add_task"]

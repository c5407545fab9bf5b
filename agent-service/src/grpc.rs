//! `taskagent.v1.AgentService` over the [`Agent`].

use std::sync::Arc;
use tracing::Instrument as _;

use taskagent_proto::agent_service_server::{AgentService, AgentServiceServer};
use taskagent_proto::{
    ChatEvent, ChatRequest, ChatResponse, ToolCallFinished, ToolCallStarted, chat_event,
};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status};

use taskagent_common::user::Caller;

use crate::agent::{Agent, Event, TurnRequest};
use crate::error::AgentError;

/// Handlers of AgentService.
#[derive(Clone)]
pub struct AgentApi {
    agent: Arc<Agent>,
}

impl AgentApi {
    pub fn new(agent: Arc<Agent>) -> Self {
        Self { agent }
    }

    pub fn into_server(self) -> AgentServiceServer<Self> {
        AgentServiceServer::new(self)
    }
}

/// Who a call acts for: the user in `x-user-id`, and the user's token when
/// it came with one (passed on to tool-service).
fn caller<T>(request: &Request<T>) -> Result<Caller, AgentError> {
    Caller::of(request.metadata()).ok_or(AgentError::Unauthenticated)
}

impl From<Event> for chat_event::Event {
    fn from(event: Event) -> Self {
        match event {
            Event::Conversation(id) => Self::ConversationId(id),
            Event::ToolCallStarted { id, tool, args } => Self::ToolCallStarted(ToolCallStarted {
                id,
                tool,
                args_json: args.to_string(),
            }),
            Event::ToolCallFinished { id, tool, result } => {
                Self::ToolCallFinished(ToolCallFinished {
                    id,
                    tool,
                    result_json: result.to_string(),
                })
            }
            Event::Text(text) => Self::Text(text),
        }
    }
}

/// The turn a request asks for, with the caller's deadline.
fn turn_request(request: Request<ChatRequest>) -> TurnRequest {
    let caller_budget = taskagent_common::grpc::caller_budget(request.metadata());
    let req = request.into_inner();
    TurnRequest {
        conversation_id: req.conversation_id,
        message: req.message,
        request_id: req.request_id,
        caller_budget,
    }
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    async fn chat(&self, request: Request<ChatRequest>) -> Result<Response<ChatResponse>, Status> {
        let caller = caller(&request)?;
        let turn = turn_request(request);
        let agent = self.agent.clone();
        // The turn runs to its end even if the caller goes away (this
        // future is dropped): its writes and its record stay whole, and a
        // retry with the same request id gets its outcome.
        let running =
            tokio::spawn(async move { agent.chat(&caller, turn, &|_| {}).await }.in_current_span());
        let outcome = running
            .await
            .map_err(|e| Status::internal(format!("turn failed: {e}")))??;
        Ok(Response::new(outcome.into()))
    }

    type StreamChatStream = UnboundedReceiverStream<Result<ChatEvent, Status>>;

    async fn stream_chat(
        &self,
        request: Request<ChatRequest>,
    ) -> Result<Response<Self::StreamChatStream>, Status> {
        let caller = caller(&request)?;
        let turn = turn_request(request);
        Agent::check_message(&turn.message)?;
        Agent::check_request_id(turn.request_id.as_deref())?;
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let agent = self.agent.clone();
        // The turn runs to its end even if the caller goes away: its writes
        // and its record in the conversation stay consistent. It stays in
        // the call's span.
        tokio::spawn(
            async move {
                let events = sender.clone();
                let on_event = move |event: Event| {
                    let _ = events.send(Ok(ChatEvent {
                        event: Some(event.into()),
                    }));
                };
                let last = match agent.chat(&caller, turn, &on_event).await {
                    Ok(outcome) => Ok(ChatEvent {
                        event: Some(chat_event::Event::Done(outcome.into())),
                    }),
                    Err(error) => Err(Status::from(error)),
                };
                let _ = sender.send(last);
            }
            .in_current_span(),
        );
        Ok(Response::new(UnboundedReceiverStream::new(receiver)))
    }
}

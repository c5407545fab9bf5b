//! `taskagent.v1.ConversationService`.

use std::time::Duration;

use sha2::{Digest, Sha256};

use taskagent_proto::conversation_service_server::{
    ConversationService, ConversationServiceServer,
};
use taskagent_proto::{
    AppendMessagesRequest, AppendMessagesResponse, BeginTurnRequest, BeginTurnResponse,
    ChatResponse, Conversation as WireConversation, CreateConversationRequest, FinishTurnRequest,
    FinishTurnResponse, GetConversationRequest, ListConversationsRequest,
    ListConversationsResponse, ListMessagesRequest, ListMessagesResponse, Message as WireMessage,
    Role as WireRole, RunToolCallsRequest, RunToolCallsResponse, ToolCall as WireToolCall,
    ToolResult as WireToolResult,
};
use tonic::{Request, Response, Status};

use super::tools::TaskTools;
use super::{caller, from_micros, micros, page_size, page_token, timestamp};
use crate::db::{BeginTurn, Conversation, Message, Store, TurnEnd, TurnKey, TurnStart};
use crate::domain::{NewMessage, Role, ToolCall, parse_conversation_title};
use crate::error::{Error, ValidationError};

/// Most messages one AppendMessages call may carry.
const MAX_APPEND: usize = 100;

/// Longest conversation title taken from a turn's first message.
const TITLE_CHARS: usize = 60;
/// A keyed turn's lease when the caller names none, and the longest one.
const DEFAULT_LEASE: Duration = Duration::from_secs(60);
const MAX_LEASE: Duration = Duration::from_secs(3600);

/// Handlers of ConversationService over a [`Store`].
#[derive(Clone)]
pub struct ConversationApi {
    store: Store,
}

impl ConversationApi {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    pub fn into_server(self) -> ConversationServiceServer<Self> {
        ConversationServiceServer::new(self)
    }
}

impl From<Conversation> for WireConversation {
    fn from(c: Conversation) -> Self {
        Self {
            id: c.id,
            title: c.title,
            create_time: Some(timestamp(c.created_at)),
            update_time: Some(timestamp(c.updated_at)),
        }
    }
}

impl From<Role> for WireRole {
    fn from(role: Role) -> Self {
        match role {
            Role::User => Self::User,
            Role::Assistant => Self::Assistant,
            Role::Tool => Self::Tool,
            Role::System => Self::System,
            Role::Error => Self::Error,
        }
    }
}

fn role_from_wire(role: i32) -> Option<Role> {
    match WireRole::try_from(role).ok()? {
        WireRole::User => Some(Role::User),
        WireRole::Assistant => Some(Role::Assistant),
        WireRole::Tool => Some(Role::Tool),
        WireRole::System => Some(Role::System),
        WireRole::Error => Some(Role::Error),
        WireRole::Unspecified => None,
    }
}

impl From<Message> for WireMessage {
    fn from(m: Message) -> Self {
        Self {
            id: m.id,
            conversation_id: m.conversation_id,
            role: WireRole::from(m.role).into(),
            content: m.content,
            tool_calls: m
                .tool_calls
                .into_iter()
                .map(|c| WireToolCall {
                    id: c.id,
                    name: c.name,
                    arguments: c.arguments,
                })
                .collect(),
            tool_call_id: m.tool_call_id.unwrap_or_default(),
            create_time: Some(timestamp(m.created_at)),
        }
    }
}

fn parse_message(m: WireMessage) -> Result<NewMessage, ValidationError> {
    let calls = m
        .tool_calls
        .into_iter()
        .map(|c| ToolCall {
            id: c.id,
            name: c.name,
            arguments: c.arguments,
        })
        .collect();
    NewMessage::parse(role_from_wire(m.role), m.content, calls, m.tool_call_id)
}

/// An idempotency key: 1 to 255 printable ASCII characters (the HTTP
/// Idempotency-Key's rule); `None` when absent.
fn request_id(raw: &str) -> Result<Option<String>, ValidationError> {
    if raw.is_empty() {
        return Ok(None);
    }
    if taskagent_common::is_idempotency_key(raw.as_bytes()) {
        Ok(Some(raw.to_owned()))
    } else {
        Err(ValidationError::InvalidRequestId)
    }
}

/// What identifies a turn's request besides its key: a retry must match.
fn fingerprint(conversation_id: Option<i64>, message: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(conversation_id.map(|id| id.to_string()).unwrap_or_default());
    hash.update([0]);
    hash.update(message);
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_turn_start(req: BeginTurnRequest) -> Result<TurnStart, ValidationError> {
    if req.message.trim().is_empty() {
        return Err(ValidationError::ContentRequired);
    }
    let history_size = usize::try_from(req.history_size)
        .map_err(|_| ValidationError::NegativeHistorySize)?
        .min(super::MAX_PAGE_SIZE);
    let title: String = req.message.trim().chars().take(TITLE_CHARS).collect();
    let key = request_id(&req.request_id)?.map(|request_id| TurnKey {
        request_id,
        fingerprint: fingerprint(req.conversation_id, &req.message),
        lease: req
            .lease
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or(DEFAULT_LEASE)
            .clamp(Duration::from_secs(1), MAX_LEASE),
    });
    // The message is checked first: its faults are the ones to report.
    let message = NewMessage::parse(Some(Role::User), req.message, Vec::new(), String::new())?;
    Ok(TurnStart {
        conversation_id: req.conversation_id,
        title: parse_conversation_title(&title)?,
        message,
        history_size,
        key,
    })
}

/// A model reply to run: an assistant message with 1 to 100 tool calls,
/// each with an id of its own.
fn parse_reply(reply: Option<WireMessage>) -> Result<NewMessage, ValidationError> {
    let reply = parse_message(reply.unwrap_or_default())?;
    if reply.role != Role::Assistant
        || reply.tool_calls.is_empty()
        || reply.tool_calls.len() > MAX_APPEND
    {
        return Err(ValidationError::ToolCallCount);
    }
    let mut ids: Vec<&str> = reply.tool_calls.iter().map(|c| c.id.as_str()).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err(ValidationError::ToolCallIdReused);
    }
    Ok(reply)
}

#[tonic::async_trait]
impl ConversationService for ConversationApi {
    async fn create_conversation(
        &self,
        request: Request<CreateConversationRequest>,
    ) -> Result<Response<WireConversation>, Status> {
        let user = caller(&request)?;
        let title = parse_conversation_title(&request.get_ref().title).map_err(Error::from)?;
        let conversation = self.store.create_conversation(&user, &title).await?;
        Ok(Response::new(conversation.into()))
    }

    async fn get_conversation(
        &self,
        request: Request<GetConversationRequest>,
    ) -> Result<Response<WireConversation>, Status> {
        let user = caller(&request)?;
        let conversation = self
            .store
            .get_conversation(&user, request.get_ref().id)
            .await?;
        Ok(Response::new(conversation.into()))
    }

    async fn list_conversations(
        &self,
        request: Request<ListConversationsRequest>,
    ) -> Result<Response<ListConversationsResponse>, Status> {
        const QUERY: &str = "conversations";
        let user = caller(&request)?;
        let req = request.into_inner();
        let limit = page_size(req.page_size)?;
        let after = match page_token::decode::<2>(&user, QUERY, &req.page_token)? {
            Some([updated, id]) => Some((from_micros(updated)?, id)),
            None => None,
        };
        let (conversations, more) = self.store.list_conversations(&user, after, limit).await?;
        let next_page_token = match conversations.last() {
            Some(last) if more => {
                page_token::encode(&user, QUERY, &[micros(last.updated_at), last.id])
            }
            _ => String::new(),
        };
        Ok(Response::new(ListConversationsResponse {
            conversations: conversations.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    async fn append_messages(
        &self,
        request: Request<AppendMessagesRequest>,
    ) -> Result<Response<AppendMessagesResponse>, Status> {
        let user = caller(&request)?;
        let req = request.into_inner();
        if req.messages.is_empty() || req.messages.len() > MAX_APPEND {
            return Err(Error::from(ValidationError::MessageCount).into());
        }
        let new = req
            .messages
            .into_iter()
            .map(parse_message)
            .collect::<Result<Vec<_>, _>>()
            .map_err(Error::from)?;
        let stored = self
            .store
            .append_messages(&user, req.conversation_id, &new)
            .await?;
        Ok(Response::new(AppendMessagesResponse {
            messages: stored.into_iter().map(Into::into).collect(),
        }))
    }

    async fn list_messages(
        &self,
        request: Request<ListMessagesRequest>,
    ) -> Result<Response<ListMessagesResponse>, Status> {
        let user = caller(&request)?;
        let req = request.into_inner();
        let query = format!("messages/{}", req.conversation_id);
        let limit = page_size(req.page_size)?;
        let before = page_token::decode::<1>(&user, &query, &req.page_token)?.map(|[id]| id);
        let page = self
            .store
            .list_messages(&user, req.conversation_id, before, limit)
            .await?;
        Ok(Response::new(ListMessagesResponse {
            messages: page.messages.into_iter().map(Into::into).collect(),
            next_page_token: page
                .more_before
                .map(|id| page_token::encode(&user, &query, &[id]))
                .unwrap_or_default(),
        }))
    }

    async fn begin_turn(
        &self,
        request: Request<BeginTurnRequest>,
    ) -> Result<Response<BeginTurnResponse>, Status> {
        let user = caller(&request)?;
        let start = parse_turn_start(request.into_inner()).map_err(Error::from)?;
        let response = match self.store.begin_turn(&user, &start).await? {
            BeginTurn::Completed(outcome) => {
                let outcome = <ChatResponse as prost::Message>::decode(outcome.as_slice())
                    .map_err(|e| {
                        Error::Database(diesel::result::Error::DeserializationError(Box::new(e)))
                    })?;
                BeginTurnResponse {
                    conversation_id: outcome.conversation_id,
                    outcome: Some(outcome),
                    ..Default::default()
                }
            }
            BeginTurn::Opened(turn) => BeginTurnResponse {
                conversation_id: turn.conversation_id,
                turn_id: turn.turn_id,
                history: turn.history.into_iter().map(Into::into).collect(),
                recorded: turn.recorded.into_iter().map(Into::into).collect(),
                outcome: None,
            },
        };
        Ok(Response::new(response))
    }

    async fn run_tool_calls(
        &self,
        request: Request<RunToolCallsRequest>,
    ) -> Result<Response<RunToolCallsResponse>, Status> {
        let user = caller(&request)?;
        let req = request.into_inner();
        let reply = parse_reply(req.reply).map_err(Error::from)?;
        let results = self
            .store
            .run_tool_calls(&user, req.conversation_id, req.turn_id, &reply, &TaskTools)
            .await?;
        Ok(Response::new(RunToolCallsResponse {
            results: results
                .into_iter()
                .map(|r| WireToolResult {
                    tool_call_id: r.tool_call_id,
                    name: r.name,
                    result_json: r.result_json,
                    duration_ms: u32::try_from(r.duration.as_millis()).unwrap_or(u32::MAX),
                })
                .collect(),
        }))
    }

    async fn finish_turn(
        &self,
        request: Request<FinishTurnRequest>,
    ) -> Result<Response<FinishTurnResponse>, Status> {
        let user = caller(&request)?;
        let req = request.into_inner();
        let message = parse_message(req.message.unwrap_or_default()).map_err(Error::from)?;
        if !matches!(message.role, Role::Assistant | Role::Error) || !message.tool_calls.is_empty()
        {
            return Err(Error::from(ValidationError::FinishRole).into());
        }
        let end = TurnEnd {
            conversation_id: req.conversation_id,
            turn_id: req.turn_id,
            message,
            request_id: request_id(&req.request_id).map_err(Error::from)?,
            outcome: req.outcome.map(|o| prost::Message::encode_to_vec(&o)),
        };
        self.store.finish_turn(&user, &end).await?;
        Ok(Response::new(FinishTurnResponse {}))
    }
}

//! `taskagent.v1.ConversationService`.

use taskagent_proto::conversation_service_server::{
    ConversationService, ConversationServiceServer,
};
use taskagent_proto::{
    AppendMessagesRequest, AppendMessagesResponse, Conversation as WireConversation,
    CreateConversationRequest, GetConversationRequest, ListConversationsRequest,
    ListConversationsResponse, ListMessagesRequest, ListMessagesResponse, Message as WireMessage,
    Role as WireRole, ToolCall as WireToolCall,
};
use tonic::{Request, Response, Status};

use super::{caller, from_micros, micros, page_size, page_token, timestamp};
use crate::db::{Conversation, Message, Store};
use crate::domain::{NewMessage, Role, ToolCall, parse_conversation_title};
use crate::error::{Error, ValidationError};

/// Most messages one AppendMessages call may carry.
const MAX_APPEND: usize = 100;

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
}

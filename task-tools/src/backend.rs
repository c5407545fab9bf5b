//! Where the tools' work happens: TaskService, behind a trait so that tests
//! can put something else there.

use taskagent_proto::task_service_client::TaskServiceClient;
use taskagent_proto::{
    CompleteTaskRequest, CreateTaskRequest, DeleteTaskRequest, ListTasksRequest, ListTasksResponse,
    Task, TaskStatusFilter, UpdateTaskRequest,
};
use tonic::transport::Channel;
use tonic::{Request, Status};
use tonic_types::StatusExt;

use crate::ToolError;

/// Task operations as one user.
#[tonic::async_trait]
pub trait TaskBackend: Send + Sync {
    async fn create_task(
        &self,
        user: &str,
        title: String,
        description: Option<String>,
        request_id: String,
    ) -> Result<Task, ToolError>;
    async fn list_tasks(
        &self,
        user: &str,
        status: TaskStatusFilter,
        page_token: String,
    ) -> Result<ListTasksResponse, ToolError>;
    async fn complete_task(&self, user: &str, id: i64) -> Result<Task, ToolError>;
    async fn delete_task(&self, user: &str, id: i64) -> Result<Task, ToolError>;
    async fn update_task(
        &self,
        user: &str,
        id: i64,
        title: Option<String>,
        description: Option<String>,
    ) -> Result<Task, ToolError>;
}

/// TaskService over gRPC, the user passed in `x-user-id`.
#[derive(Clone)]
pub struct GrpcTasks {
    client: TaskServiceClient<Channel>,
}

impl GrpcTasks {
    pub fn new(channel: Channel) -> Self {
        Self {
            client: TaskServiceClient::new(channel),
        }
    }
}

/// `message` as a request made for `user`.
fn as_user<T>(user: &str, message: T) -> Result<Request<T>, ToolError> {
    let mut request = Request::new(message);
    let value = user
        .parse()
        .map_err(|_| ToolError("Invalid user identity".to_owned()))?;
    request.metadata_mut().insert("x-user-id", value);
    Ok(request)
}

/// What a failed TaskService call tells the model: TaskService's own message
/// ("Task not found", "Title is required", ...) when it answered, and "tool
/// service unavailable" when it could not be reached.
fn tool_error(status: Status) -> ToolError {
    if status.get_details_error_info().is_some() {
        ToolError(status.message().to_owned())
    } else {
        ToolError("tool service unavailable".to_owned())
    }
}

#[tonic::async_trait]
impl TaskBackend for GrpcTasks {
    async fn create_task(
        &self,
        user: &str,
        title: String,
        description: Option<String>,
        request_id: String,
    ) -> Result<Task, ToolError> {
        let request = as_user(
            user,
            CreateTaskRequest {
                title,
                description,
                request_id,
            },
        )?;
        let response = self
            .client
            .clone()
            .create_task(request)
            .await
            .map_err(tool_error)?;
        Ok(response.into_inner())
    }

    async fn list_tasks(
        &self,
        user: &str,
        status: TaskStatusFilter,
        page_token: String,
    ) -> Result<ListTasksResponse, ToolError> {
        let request = as_user(
            user,
            ListTasksRequest {
                page_size: 100,
                page_token,
                status: status.into(),
            },
        )?;
        let response = self
            .client
            .clone()
            .list_tasks(request)
            .await
            .map_err(tool_error)?;
        Ok(response.into_inner())
    }

    async fn complete_task(&self, user: &str, id: i64) -> Result<Task, ToolError> {
        let request = as_user(user, CompleteTaskRequest { id })?;
        let response = self
            .client
            .clone()
            .complete_task(request)
            .await
            .map_err(tool_error)?;
        Ok(response.into_inner())
    }

    async fn delete_task(&self, user: &str, id: i64) -> Result<Task, ToolError> {
        let request = as_user(user, DeleteTaskRequest { id })?;
        let response = self
            .client
            .clone()
            .delete_task(request)
            .await
            .map_err(tool_error)?;
        Ok(response.into_inner())
    }

    async fn update_task(
        &self,
        user: &str,
        id: i64,
        title: Option<String>,
        description: Option<String>,
    ) -> Result<Task, ToolError> {
        let request = as_user(
            user,
            UpdateTaskRequest {
                id,
                title,
                description,
            },
        )?;
        let response = self
            .client
            .clone()
            .update_task(request)
            .await
            .map_err(tool_error)?;
        Ok(response.into_inner())
    }
}

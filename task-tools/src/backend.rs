//! Where the tools' work happens: TaskService, behind a trait so that tests
//! can put something else there.

use std::future::Future;

use taskagent_common::grpc::Channel;
use taskagent_proto::task_service_client::TaskServiceClient;
use taskagent_proto::{
    CompleteTaskRequest, CreateTaskRequest, DeleteTaskRequest, GetTaskRequest, ListTasksRequest,
    ListTasksResponse, Task, TaskStatusFilter, UpdateTaskRequest,
};
use tonic::{Request, Status};

use crate::ToolError;

/// Task operations as one user.
#[tonic::async_trait]
pub trait TaskBackend: Send + Sync {
    async fn create_task(
        &self,
        user: &str,
        title: String,
        description: Option<String>,
    ) -> Result<Task, ToolError>;
    async fn list_tasks(
        &self,
        user: &str,
        status: TaskStatusFilter,
        page_size: i32,
        page_token: String,
    ) -> Result<ListTasksResponse, ToolError>;
    async fn get_task(&self, user: &str, id: i64) -> Result<Task, ToolError>;
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

/// TaskService over gRPC, the user passed in `x-user-id` (and the user's
/// token, when one was given, in `authorization`).
#[derive(Clone)]
pub struct GrpcTasks {
    client: TaskServiceClient<Channel>,
    authorization: Option<Vec<u8>>,
}

impl GrpcTasks {
    pub fn new(channel: Channel) -> Self {
        Self {
            client: TaskServiceClient::new(channel),
            authorization: None,
        }
    }

    /// The same, passing on a user's `Authorization` value with every call.
    pub fn with_authorization(&self, value: Option<&[u8]>) -> Self {
        Self {
            client: self.client.clone(),
            authorization: value.map(<[u8]>::to_vec),
        }
    }

    /// `message` as a request made for `user`.
    fn as_user<T>(&self, user: &str, message: T) -> Result<Request<T>, ToolError> {
        taskagent_common::user::Caller::new(user)
            .with_authorization(self.authorization.as_deref())
            .request(message)
            .ok_or_else(|| ToolError("Invalid user identity".to_owned()))
    }
}

/// What a failed TaskService call tells the model: TaskService's own message
/// ("Task not found", "Title is required", ...) when it answered, and "tool
/// service unavailable" when it could not be reached.
fn tool_error(status: Status) -> ToolError {
    if taskagent_common::grpc::our_reason(&status).is_some() {
        ToolError(status.message().to_owned())
    } else {
        ToolError("tool service unavailable".to_owned())
    }
}

impl GrpcTasks {
    /// Makes one TaskService call as `user`.
    async fn call<M, R, F>(
        &self,
        user: &str,
        message: M,
        method: impl FnOnce(TaskServiceClient<Channel>, Request<M>) -> F,
    ) -> Result<R, ToolError>
    where
        F: Future<Output = Result<tonic::Response<R>, Status>>,
    {
        let response = method(self.client.clone(), self.as_user(user, message)?).await;
        Ok(response.map_err(tool_error)?.into_inner())
    }
}

#[tonic::async_trait]
impl TaskBackend for GrpcTasks {
    async fn create_task(
        &self,
        user: &str,
        title: String,
        description: Option<String>,
    ) -> Result<Task, ToolError> {
        let message = CreateTaskRequest {
            title,
            description,
            request_id: String::new(),
        };
        self.call(
            user,
            message,
            |mut c, r| async move { c.create_task(r).await },
        )
        .await
    }

    async fn get_task(&self, user: &str, id: i64) -> Result<Task, ToolError> {
        let message = GetTaskRequest { id };
        self.call(user, message, |mut c, r| async move { c.get_task(r).await })
            .await
    }

    async fn list_tasks(
        &self,
        user: &str,
        status: TaskStatusFilter,
        page_size: i32,
        page_token: String,
    ) -> Result<ListTasksResponse, ToolError> {
        let message = ListTasksRequest {
            page_size,
            page_token,
            status: status.into(),
        };
        self.call(
            user,
            message,
            |mut c, r| async move { c.list_tasks(r).await },
        )
        .await
    }

    async fn complete_task(&self, user: &str, id: i64) -> Result<Task, ToolError> {
        let message = CompleteTaskRequest { id };
        self.call(
            user,
            message,
            |mut c, r| async move { c.complete_task(r).await },
        )
        .await
    }

    async fn delete_task(&self, user: &str, id: i64) -> Result<Task, ToolError> {
        let message = DeleteTaskRequest { id };
        self.call(
            user,
            message,
            |mut c, r| async move { c.delete_task(r).await },
        )
        .await
    }

    async fn update_task(
        &self,
        user: &str,
        id: i64,
        title: Option<String>,
        description: Option<String>,
    ) -> Result<Task, ToolError> {
        let message = UpdateTaskRequest {
            id,
            title,
            description,
            completed: None,
        };
        self.call(
            user,
            message,
            |mut c, r| async move { c.update_task(r).await },
        )
        .await
    }
}

//! The REST task API of the original web frontends:
//! `GET|POST /api/{user_id}/tasks`,
//! `GET|PUT|PATCH|DELETE /api/{user_id}/tasks/{task_id}` and
//! `PATCH /api/{user_id}/tasks/{task_id}/complete`, each one TaskService
//! call (the toggle two) as the token's user, who must be the path's.
//! Every request spends one unit of the user's rate budget, like a chat.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use taskagent_common::grpc::Channel;
use taskagent_proto::task_service_client::TaskServiceClient;
use taskagent_proto::{
    CreateTaskRequest, DeleteTaskRequest, GetTaskRequest, ListTasksRequest, TaskStatusFilter,
    UpdateTaskRequest,
};
use utoipa::{IntoParams, ToSchema};

use super::{UserPath, check_path_user, json_body, time, user_request};
use crate::auth::AuthenticatedUser;
use crate::edge::BodyWithin;
use crate::error::ApiError;
use crate::state::AppState;

/// A task's address: `/api/{user_id}/tasks/{task_id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TaskPath {
    /// The token's user.
    user_id: String,
    task_id: i64,
}

/// A task of one user.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Task {
    /// Server-assigned, unique across all users.
    pub id: i64,
    pub user_id: String,
    /// 1 to 200 characters, trimmed.
    pub title: String,
    /// Up to 1000 characters; null when the task has none.
    pub description: Option<String>,
    pub completed: bool,
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl Task {
    fn of(user: &str, task: taskagent_proto::Task) -> Self {
        Self {
            id: task.id,
            user_id: user.to_owned(),
            description: (!task.description.is_empty()).then_some(task.description),
            title: task.title,
            completed: task.completed,
            created_at: time(task.create_time.as_ref()).unwrap_or_default(),
            updated_at: time(task.update_time.as_ref()).unwrap_or_default(),
        }
    }
}

/// One page of tasks, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskList {
    pub tasks: Vec<Task>,
    /// How many tasks this page holds.
    pub count: usize,
    /// Pass as `page_token` for the next page; empty on the last one.
    pub next_page_token: String,
}

/// Which tasks a list holds.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatusFilter {
    #[default]
    All,
    Pending,
    Completed,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `all` (the default), `pending` or `completed`.
    #[serde(default)]
    #[param(inline)]
    status: StatusFilter,
    /// At most this many tasks (default 50, at most 1000).
    #[serde(default)]
    #[param(minimum = 0)]
    page_size: i32,
    /// `next_page_token` of the previous page, with the same `status`.
    #[serde(default)]
    page_token: String,
}

/// A task to create.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewTask {
    /// 1 to 200 characters once trimmed.
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\x00]*\S[^\x00]*$")]
    title: String,
    /// Up to 1000 characters.
    #[serde(default)]
    #[schema(max_length = 1000, pattern = r"^[^\x00]*$")]
    description: Option<String>,
}

/// What to change in a task; absent or null fields stay as they are (with
/// none, the task is returned unchanged).
#[derive(Debug, Deserialize, ToSchema)]
pub struct TaskUpdate {
    /// 1 to 200 characters once trimmed.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\x00]*\S[^\x00]*$")]
    title: Option<String>,
    /// Up to 1000 characters; an empty string clears the description.
    #[serde(default)]
    #[schema(max_length = 1000, pattern = r"^[^\x00]*$")]
    description: Option<String>,
    /// `false` reopens a completed task.
    #[serde(default)]
    completed: Option<bool>,
}

/// The answer to a delete.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Deleted {
    /// Always "Task deleted".
    pub message: String,
    pub deleted_id: i64,
}

/// The checks every task route makes before it reads a body: the path's
/// user is the token's (403), one unit of the rate budget (429). Gives the
/// client for the call.
async fn admit(
    state: &AppState,
    user: &str,
    path_user: &str,
) -> Result<TaskServiceClient<Channel>, ApiError> {
    check_path_user(user, path_user)?;
    state.charge(user).await?;
    Ok(TaskServiceClient::new(state.tool_channel.clone()))
}

/// Lists the user's tasks, oldest first.
#[utoipa::path(
    get,
    path = "/api/{user_id}/tasks",
    tag = "tasks",
    params(UserPath, ListQuery),
    responses((status = OK, body = TaskList)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(AuthenticatedUser(user)): Extension<AuthenticatedUser>,
    Path(UserPath { user_id }): Path<UserPath>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Result<Json<TaskList>, ApiError> {
    let mut tasks = admit(&state, &user, &user_id).await?;
    let status = match query.status {
        StatusFilter::All => TaskStatusFilter::All,
        StatusFilter::Pending => TaskStatusFilter::Pending,
        StatusFilter::Completed => TaskStatusFilter::Completed,
    };
    let message = ListTasksRequest {
        page_size: query.page_size,
        page_token: query.page_token,
        status: status.into(),
    };
    let page = tasks
        .list_tasks(user_request(&user, &headers, message)?)
        .await?
        .into_inner();
    let tasks: Vec<Task> = page.tasks.into_iter().map(|t| Task::of(&user, t)).collect();
    Ok(Json(TaskList {
        count: tasks.len(),
        tasks,
        next_page_token: page.next_page_token,
    }))
}

/// Creates a task. With an `Idempotency-Key` (at most 128 characters) the
/// same request again returns the task the first one created.
#[utoipa::path(
    post,
    path = "/api/{user_id}/tasks",
    tag = "tasks",
    params(
        UserPath,
        ("Idempotency-Key" = Option<String>, Header, max_length = 128, pattern = r"^[!-~]([ -~]*[!-~])?$",
            description = "At most 128 printable ASCII characters: a retry with the same key and body returns the first request's task"),
    ),
    request_body = NewTask,
    responses((status = CREATED, body = Task)),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(AuthenticatedUser(user)): Extension<AuthenticatedUser>,
    Path(UserPath { user_id }): Path<UserPath>,
    headers: HeaderMap,
    BodyWithin(body): BodyWithin,
) -> Result<(StatusCode, Json<Task>), ApiError> {
    let mut tasks = admit(&state, &user, &user_id).await?;
    let new: NewTask = json_body(body)?;
    let message = CreateTaskRequest {
        title: new.title,
        description: new.description,
        request_id: super::chat::idempotency_key(&headers)?.unwrap_or_default(),
    };
    let task = tasks
        .create_task(user_request(&user, &headers, message)?)
        .await?
        .into_inner();
    Ok((StatusCode::CREATED, Json(Task::of(&user, task))))
}

/// Gets one task; another user's is not found, like a missing one.
#[utoipa::path(
    get,
    path = "/api/{user_id}/tasks/{task_id}",
    tag = "tasks",
    params(TaskPath),
    responses((status = OK, body = Task)),
    security(("bearer" = []))
)]
pub async fn get_one(
    State(state): State<AppState>,
    Extension(AuthenticatedUser(user)): Extension<AuthenticatedUser>,
    Path(TaskPath { user_id, task_id }): Path<TaskPath>,
    headers: HeaderMap,
) -> Result<Json<Task>, ApiError> {
    let mut tasks = admit(&state, &user, &user_id).await?;
    let message = GetTaskRequest { id: task_id };
    let task = tasks
        .get_task(user_request(&user, &headers, message)?)
        .await?
        .into_inner();
    Ok(Json(Task::of(&user, task)))
}

/// Changes a task's title, description and/or completion (one call, so
/// all of them or none).
async fn update(
    state: AppState,
    user: String,
    TaskPath { user_id, task_id }: TaskPath,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, ApiError>,
) -> Result<Json<Task>, ApiError> {
    let mut tasks = admit(&state, &user, &user_id).await?;
    let change: TaskUpdate = json_body(body)?;
    let task =
        if change.title.is_none() && change.description.is_none() && change.completed.is_none() {
            // Nothing to change: the task as it is.
            let message = GetTaskRequest { id: task_id };
            tasks
                .get_task(user_request(&user, &headers, message)?)
                .await?
        } else {
            let message = UpdateTaskRequest {
                id: task_id,
                title: change.title,
                description: change.description,
                completed: change.completed,
            };
            tasks
                .update_task(user_request(&user, &headers, message)?)
                .await?
        };
    Ok(Json(Task::of(&user, task.into_inner())))
}

/// Changes a task: any of `title`, `description`, `completed`.
#[utoipa::path(
    put,
    path = "/api/{user_id}/tasks/{task_id}",
    tag = "tasks",
    params(TaskPath),
    request_body = TaskUpdate,
    responses((status = OK, body = Task)),
    security(("bearer" = []))
)]
pub async fn replace(
    State(state): State<AppState>,
    Extension(AuthenticatedUser(user)): Extension<AuthenticatedUser>,
    Path(path): Path<TaskPath>,
    headers: HeaderMap,
    BodyWithin(body): BodyWithin,
) -> Result<Json<Task>, ApiError> {
    update(state, user, path, headers, body).await
}

/// The same as `PUT`: any of `title`, `description`, `completed`.
#[utoipa::path(
    patch,
    path = "/api/{user_id}/tasks/{task_id}",
    tag = "tasks",
    params(TaskPath),
    request_body = TaskUpdate,
    responses((status = OK, body = Task)),
    security(("bearer" = []))
)]
pub async fn patch(
    State(state): State<AppState>,
    Extension(AuthenticatedUser(user)): Extension<AuthenticatedUser>,
    Path(path): Path<TaskPath>,
    headers: HeaderMap,
    BodyWithin(body): BodyWithin,
) -> Result<Json<Task>, ApiError> {
    update(state, user, path, headers, body).await
}

/// Deletes a task.
#[utoipa::path(
    delete,
    path = "/api/{user_id}/tasks/{task_id}",
    tag = "tasks",
    params(TaskPath),
    responses((status = OK, body = Deleted)),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    Extension(AuthenticatedUser(user)): Extension<AuthenticatedUser>,
    Path(TaskPath { user_id, task_id }): Path<TaskPath>,
    headers: HeaderMap,
) -> Result<Json<Deleted>, ApiError> {
    let mut tasks = admit(&state, &user, &user_id).await?;
    let message = DeleteTaskRequest { id: task_id };
    let task = tasks
        .delete_task(user_request(&user, &headers, message)?)
        .await?
        .into_inner();
    Ok(Json(Deleted {
        message: "Task deleted".to_owned(),
        deleted_id: task.id,
    }))
}

/// Toggles a task's completion: completes a pending task, reopens a
/// completed one.
#[utoipa::path(
    patch,
    path = "/api/{user_id}/tasks/{task_id}/complete",
    tag = "tasks",
    params(TaskPath),
    responses((status = OK, body = Task)),
    security(("bearer" = []))
)]
pub async fn toggle(
    State(state): State<AppState>,
    Extension(AuthenticatedUser(user)): Extension<AuthenticatedUser>,
    Path(TaskPath { user_id, task_id }): Path<TaskPath>,
    headers: HeaderMap,
) -> Result<Json<Task>, ApiError> {
    let mut tasks = admit(&state, &user, &user_id).await?;
    let get = GetTaskRequest { id: task_id };
    let current = tasks
        .get_task(user_request(&user, &headers, get)?)
        .await?
        .into_inner();
    let message = UpdateTaskRequest {
        id: task_id,
        completed: Some(!current.completed),
        ..Default::default()
    };
    let task = tasks
        .update_task(user_request(&user, &headers, message)?)
        .await?
        .into_inner();
    Ok(Json(Task::of(&user, task)))
}

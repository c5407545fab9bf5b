//! `taskagent.v1.TaskService`.

use taskagent_proto::task_service_server::{TaskService, TaskServiceServer};
use taskagent_proto::{
    CompleteTaskRequest, CreateTaskRequest, DeleteTaskRequest, GetTaskRequest, ListTasksRequest,
    ListTasksResponse, Task as WireTask, TaskStatusFilter, UpdateTaskRequest,
};
use tonic::{Request, Response, Status};

use super::{caller, page_size, page_token, timestamp};
use crate::db::{Store, Task, TaskPage};
use crate::domain::{NewTask, StatusFilter, TaskChange, UserId};

/// Handlers of TaskService over a [`Store`].
#[derive(Clone)]
pub struct TaskApi {
    store: Store,
}

impl TaskApi {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    pub fn into_server(self) -> TaskServiceServer<Self> {
        TaskServiceServer::new(self)
    }
}

impl From<Task> for WireTask {
    fn from(task: Task) -> Self {
        Self {
            id: task.id,
            title: task.title,
            description: task.description.unwrap_or_default(),
            completed: task.completed,
            create_time: Some(timestamp(task.created_at)),
            update_time: Some(timestamp(task.updated_at)),
        }
    }
}

/// A ListTasks request, checked: the filter, where to start, how many.
pub(super) struct ListQuery {
    pub status: StatusFilter,
    /// Names the query in page tokens.
    name: &'static str,
    pub after: Option<i64>,
    pub limit: usize,
}

impl ListQuery {
    pub fn parse(user: &UserId, req: &ListTasksRequest) -> Result<Self, crate::Error> {
        let (status, name) = status_filter(req.status);
        Ok(Self {
            status,
            name,
            after: page_token::decode::<1>(user, name, &req.page_token)?.map(|[id]| id),
            limit: page_size(req.page_size)?,
        })
    }

    /// The page as ListTasks answers it, with the token of the next one.
    pub fn response(&self, user: &UserId, page: TaskPage) -> ListTasksResponse {
        ListTasksResponse {
            tasks: page.tasks.into_iter().map(Into::into).collect(),
            next_page_token: page
                .more_after
                .map(|id| page_token::encode(user, self.name, &[id]))
                .unwrap_or_default(),
        }
    }
}

fn status_filter(status: i32) -> (StatusFilter, &'static str) {
    match TaskStatusFilter::try_from(status) {
        Ok(TaskStatusFilter::Pending) => (StatusFilter::Pending, "tasks/pending"),
        Ok(TaskStatusFilter::Completed) => (StatusFilter::Completed, "tasks/completed"),
        // Unknown future values read as "all", as proto3 enums should.
        _ => (StatusFilter::All, "tasks/all"),
    }
}

#[tonic::async_trait]
impl TaskService for TaskApi {
    async fn create_task(
        &self,
        request: Request<CreateTaskRequest>,
    ) -> Result<Response<WireTask>, Status> {
        let user = caller(&request)?;
        let req = request.into_inner();
        let new = NewTask::parse(&req.title, req.description.as_deref(), &req.request_id)
            .map_err(crate::Error::from)?;
        let task = self.store.create_task(&user, &new).await?;
        Ok(Response::new(task.into()))
    }

    async fn get_task(
        &self,
        request: Request<GetTaskRequest>,
    ) -> Result<Response<WireTask>, Status> {
        let user = caller(&request)?;
        let task = self.store.get_task(&user, request.get_ref().id).await?;
        Ok(Response::new(task.into()))
    }

    async fn list_tasks(
        &self,
        request: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        let user = caller(&request)?;
        let query = ListQuery::parse(&user, request.get_ref())?;
        let page = self
            .store
            .list_tasks(&user, query.status, query.after, query.limit)
            .await?;
        Ok(Response::new(query.response(&user, page)))
    }

    async fn update_task(
        &self,
        request: Request<UpdateTaskRequest>,
    ) -> Result<Response<WireTask>, Status> {
        let user = caller(&request)?;
        let req = request.into_inner();
        let change = TaskChange::parse(
            req.title.as_deref(),
            req.description.as_deref(),
            req.completed,
        )
        .map_err(crate::Error::from)?;
        let task = self.store.update_task(&user, req.id, &change).await?;
        Ok(Response::new(task.into()))
    }

    async fn complete_task(
        &self,
        request: Request<CompleteTaskRequest>,
    ) -> Result<Response<WireTask>, Status> {
        let user = caller(&request)?;
        let task = self
            .store
            .complete_task(&user, request.get_ref().id)
            .await?;
        Ok(Response::new(task.into()))
    }

    async fn delete_task(
        &self,
        request: Request<DeleteTaskRequest>,
    ) -> Result<Response<WireTask>, Status> {
        let user = caller(&request)?;
        let task = self.store.delete_task(&user, request.get_ref().id).await?;
        Ok(Response::new(task.into()))
    }
}

//! `taskagent.v1.TaskService`.

use taskagent_proto::task_service_server::{TaskService, TaskServiceServer};
use taskagent_proto::{
    CompleteTaskRequest, CreateTaskRequest, DeleteTaskRequest, GetTaskRequest, ListTasksRequest,
    ListTasksResponse, Task as WireTask, TaskStatusFilter, UpdateTaskRequest,
};
use tonic::{Request, Response, Status};

use super::{caller, page_size, page_token, timestamp};
use crate::db::{Store, Task};
use crate::domain::{NewTask, StatusFilter, TaskChange};

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
        let req = request.into_inner();
        let (status, query) = status_filter(req.status);
        let limit = page_size(req.page_size)?;
        let after = page_token::decode::<1>(&user, query, &req.page_token)?.map(|[id]| id);
        let page = self.store.list_tasks(&user, status, after, limit).await?;
        Ok(Response::new(ListTasksResponse {
            tasks: page.tasks.into_iter().map(Into::into).collect(),
            next_page_token: page
                .more_after
                .map(|id| page_token::encode(&user, query, &[id]))
                .unwrap_or_default(),
        }))
    }

    async fn update_task(
        &self,
        request: Request<UpdateTaskRequest>,
    ) -> Result<Response<WireTask>, Status> {
        let user = caller(&request)?;
        let req = request.into_inner();
        let change = TaskChange::parse(req.title.as_deref(), req.description.as_deref())
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

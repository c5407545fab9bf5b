//! The task tools run inside tool-service, on a turn's transaction: the same
//! argument parsing and result shapes as everywhere (`taskagent_tools`), over
//! a [`TaskBackend`] whose every call is a query on that transaction.

use std::sync::Mutex;

use taskagent_proto::{ListTasksRequest, ListTasksResponse, Task as WireTask, TaskStatusFilter};
use taskagent_tools::{TaskBackend, ToolError};

use super::tasks::ListQuery;
use crate::db::{self, Conn, ToolRunner};
use crate::domain::{NewTask, TaskChange, ToolCall, UserId};
use crate::error::Error;

/// Runs tool calls with `taskagent_tools`.
pub struct TaskTools;

#[tonic::async_trait]
impl ToolRunner for TaskTools {
    async fn run(&self, conn: Conn<'_>, user: &UserId, call: &ToolCall) -> Result<String, Error> {
        let tasks = TransactionTasks {
            conn: tokio::sync::Mutex::new(conn),
            user,
            failure: Mutex::new(None),
        };
        let result = taskagent_tools::run(&tasks, user.as_str(), &call.name, &call.arguments).await;
        match tasks
            .failure
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
        {
            Some(error) => Err(error),
            None => Ok(result.to_string()),
        }
    }
}

/// TaskService's operations on one open transaction, as one user.
struct TransactionTasks<'c, 'u> {
    conn: tokio::sync::Mutex<Conn<'c>>,
    user: &'u UserId,
    /// A failure that is not the model's to read (the database failed):
    /// the transaction must roll back.
    failure: Mutex<Option<Error>>,
}

impl TransactionTasks<'_, '_> {
    /// A result for the model, or the failure kept for the transaction.
    fn settle<T>(&self, result: Result<T, Error>) -> Result<T, ToolError> {
        result.map_err(|error| match error {
            Error::Invalid(_) | Error::TaskNotFound => ToolError(error.to_string()),
            other => {
                let message = ToolError("database unavailable".to_owned());
                let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
                failure.get_or_insert(other);
                message
            }
        })
    }
}

#[tonic::async_trait]
impl TaskBackend for TransactionTasks<'_, '_> {
    async fn create_task(
        &self,
        _user: &str,
        title: String,
        description: Option<String>,
    ) -> Result<WireTask, ToolError> {
        let result = async {
            let new = NewTask::parse(&title, description.as_deref(), "")?;
            let mut conn = self.conn.lock().await;
            db::create_task(conn.reborrow(), self.user, &new).await
        };
        self.settle(result.await).map(Into::into)
    }

    async fn list_tasks(
        &self,
        _user: &str,
        status: TaskStatusFilter,
        page_size: i32,
        page_token: String,
    ) -> Result<ListTasksResponse, ToolError> {
        let result = async {
            let request = ListTasksRequest {
                page_size,
                page_token,
                status: status.into(),
            };
            let query = ListQuery::parse(self.user, &request)?;
            let mut conn = self.conn.lock().await;
            let page = db::list_tasks(
                conn.reborrow(),
                self.user,
                query.status,
                query.after,
                query.limit,
            )
            .await?;
            Ok(query.response(self.user, page))
        };
        self.settle(result.await)
    }

    async fn get_task(&self, _user: &str, id: i64) -> Result<WireTask, ToolError> {
        let mut conn = self.conn.lock().await;
        let result = db::get_task(conn.reborrow(), self.user, id).await;
        self.settle(result).map(Into::into)
    }

    async fn complete_task(&self, _user: &str, id: i64) -> Result<WireTask, ToolError> {
        let mut conn = self.conn.lock().await;
        let result = db::complete_task(conn.reborrow(), self.user, id).await;
        self.settle(result).map(Into::into)
    }

    async fn delete_task(&self, _user: &str, id: i64) -> Result<WireTask, ToolError> {
        let mut conn = self.conn.lock().await;
        let result = db::delete_task(conn.reborrow(), self.user, id).await;
        self.settle(result).map(Into::into)
    }

    async fn update_task(
        &self,
        _user: &str,
        id: i64,
        title: Option<String>,
        description: Option<String>,
    ) -> Result<WireTask, ToolError> {
        let result = async {
            let change = TaskChange::parse(title.as_deref(), description.as_deref(), None)?;
            let mut conn = self.conn.lock().await;
            db::update_task(conn.reborrow(), self.user, id, &change).await
        };
        self.settle(result.await).map(Into::into)
    }
}

//! Task queries. Every one filters by the calling user, so another user's
//! task behaves exactly like a missing one.
//!
//! Each query is a function of a [`Conn`], so that it runs the same on a
//! pooled connection (the TaskService methods of [`Store`]) and inside a
//! turn's transaction (tool calls recorded with their results).

use chrono::{NaiveDateTime, SubsecRound, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Text};
use diesel_async::RunQueryDsl;

use super::models::{InsertTask, TaskChangeset, TaskRow};
use super::row::RowGt;
use super::schema::tasks;
use super::{Conn, Store, on_conn, with_connection, with_write_connection};
use crate::domain::{NewTask, StatusFilter, TaskChange, UserId};
use crate::error::Error;

/// A stored task.
pub type Task = TaskRow;

/// One page of a task list.
#[derive(Debug)]
pub struct TaskPage {
    pub tasks: Vec<Task>,
    /// Id of the last task returned, when more follow.
    pub more_after: Option<i64>,
}

/// The task `id` if it belongs to `user`: the condition of every query that
/// reads or changes one task.
#[diesel::dsl::auto_type]
fn task_of<'a>(id: i64, user: &'a str) -> _ {
    tasks::id.eq(id).and(tasks::user_id.eq(user))
}

/// The current time as stored: UTC, microsecond precision on both backends.
pub(super) fn now() -> NaiveDateTime {
    Utc::now().naive_utc().trunc_subsecs(6)
}

/// Creates a task. A repeated `request_id` returns the task the first call
/// created instead of a second one; the same `request_id` with other fields
/// is [`Error::RequestIdReused`].
pub(crate) async fn create_task(
    conn: Conn<'_>,
    user: &UserId,
    new: &NewTask,
) -> Result<Task, Error> {
    let now = now();
    let row = InsertTask {
        user_id: user.as_str(),
        title: new.title.as_str(),
        description: new.description.as_deref(),
        completed: false,
        request_id: new.request_id.as_deref(),
        created_at: now,
        updated_at: now,
    };
    on_conn!(conn, conn => {
        let inserted = match new.request_id {
            // Without a key nothing can conflict: a plain INSERT.
            None => Some(
                diesel::insert_into(tasks::table)
                    .values(&row)
                    .returning(TaskRow::as_returning())
                    .get_result(conn)
                    .await?,
            ),
            Some(_) => diesel::insert_into(tasks::table)
                .values(&row)
                .on_conflict_do_nothing()
                .returning(TaskRow::as_returning())
                .get_result(conn)
                .await
                .optional()?,
        };
        match inserted {
            Some(task) => Ok(task),
            // Only the (user_id, request_id) key can conflict.
            None => {
                let first: TaskRow = tasks::table
                    .filter(tasks::user_id.eq(user.as_str()))
                    .filter(tasks::request_id.eq(new.request_id.as_deref()))
                    .select(TaskRow::as_select())
                    .first(conn)
                    .await?;
                // The same request again gets the task it created; another
                // one under the same id is refused. Once the task has been
                // changed the two can no longer be told apart: the retry
                // wins the doubt.
                let unchanged = first.updated_at == first.created_at;
                let same = first.title == row.title && first.description.as_deref() == row.description;
                if unchanged && !same {
                    return Err(Error::RequestIdReused);
                }
                Ok(first)
            }
        }
    })
}

pub(crate) async fn get_task(conn: Conn<'_>, user: &UserId, id: i64) -> Result<Task, Error> {
    on_conn!(conn, conn => {
        Ok(tasks::table
            .filter(task_of(id, user.as_str()))
            .select(TaskRow::as_select())
            .first(conn)
            .await
            .optional()?)
    })?
    .ok_or(Error::TaskNotFound)
}

/// Up to `limit` tasks with ids above `after`, oldest first.
pub(crate) async fn list_tasks(
    conn: Conn<'_>,
    user: &UserId,
    status: StatusFilter,
    after: Option<i64>,
    limit: usize,
) -> Result<TaskPage, Error> {
    let fetch = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
    let mut tasks = on_conn!(conn, conn => {
        // Keyset pagination as a row comparison on the index's own columns
        // (see `row`): only the primary key (user_id, id), idx_tasks_user_id
        // on SQLite, or idx_tasks_completed serve it.
        let after = after.unwrap_or(0);
        let query = tasks::table
            .filter(tasks::user_id.eq(user.as_str()))
            .select(TaskRow::as_select())
            .limit(fetch)
            .into_boxed();
        let query = match status.completed() {
            None => query
                .filter(RowGt(
                    (tasks::user_id, tasks::id),
                    (user.as_str().into_sql::<Text>(), after.into_sql::<BigInt>()),
                ))
                .order((tasks::user_id.asc(), tasks::id.asc())),
            Some(completed) => query
                .filter(tasks::completed.eq(completed))
                .filter(RowGt(
                    (tasks::user_id, tasks::completed, tasks::id),
                    (
                        user.as_str().into_sql::<Text>(),
                        completed.into_sql::<Bool>(),
                        after.into_sql::<BigInt>(),
                    ),
                ))
                .order((tasks::user_id.asc(), tasks::completed.asc(), tasks::id.asc())),
        };
        Ok::<_, Error>(query.load(conn).await?)
    })?;
    let more_after = (tasks.len() > limit).then(|| {
        tasks.truncate(limit);
        tasks.last().map_or(0, |t| t.id)
    });
    Ok(TaskPage { tasks, more_after })
}

pub(crate) async fn update_task(
    conn: Conn<'_>,
    user: &UserId,
    id: i64,
    change: &TaskChange,
) -> Result<Task, Error> {
    let changes = TaskChangeset {
        title: change.title.as_ref().map(|t| t.as_str()),
        description: change.description.as_ref().map(|d| d.as_deref()),
        completed: change.completed,
        updated_at: now(),
    };
    on_conn!(conn, conn => {
        Ok(diesel::update(tasks::table)
            .filter(task_of(id, user.as_str()))
            .set(&changes)
            .returning(TaskRow::as_returning())
            .get_result(conn)
            .await
            .optional()?)
    })?
    .ok_or(Error::TaskNotFound)
}

/// Marks a task completed; completing it again changes nothing and
/// succeeds. A task deleted meanwhile is not found.
pub(crate) async fn complete_task(conn: Conn<'_>, user: &UserId, id: i64) -> Result<Task, Error> {
    let now = now();
    on_conn!(conn, conn => {
        let completed = diesel::update(tasks::table)
            .filter(task_of(id, user.as_str()))
            .filter(tasks::completed.eq(false))
            .set((tasks::completed.eq(true), tasks::updated_at.eq(now)))
            .returning(TaskRow::as_returning())
            .get_result(conn)
            .await
            .optional()?;
        match completed {
            Some(task) => Ok(Some(task)),
            // Already completed (by this call's twin, maybe), or missing.
            None => Ok(tasks::table
                .filter(task_of(id, user.as_str()))
                .select(TaskRow::as_select())
                .first(conn)
                .await
                .optional()?),
        }
    })?
    .ok_or(Error::TaskNotFound)
}

/// Deletes a task and returns it as it was.
pub(crate) async fn delete_task(conn: Conn<'_>, user: &UserId, id: i64) -> Result<Task, Error> {
    on_conn!(conn, conn => {
        Ok(diesel::delete(tasks::table)
            .filter(task_of(id, user.as_str()))
            .returning(TaskRow::as_returning())
            .get_result(conn)
            .await
            .optional()?)
    })?
    .ok_or(Error::TaskNotFound)
}

/// TaskService's queries, each on a pooled connection of its own.
impl Store {
    pub async fn create_task(&self, user: &UserId, new: &NewTask) -> Result<Task, Error> {
        with_write_connection!(self, conn => create_task(conn.into(), user, new).await)
    }

    pub async fn get_task(&self, user: &UserId, id: i64) -> Result<Task, Error> {
        with_connection!(self, conn => get_task(conn.into(), user, id).await)
    }

    pub async fn list_tasks(
        &self,
        user: &UserId,
        status: StatusFilter,
        after: Option<i64>,
        limit: usize,
    ) -> Result<TaskPage, Error> {
        with_connection!(self, conn => list_tasks(conn.into(), user, status, after, limit).await)
    }

    pub async fn update_task(
        &self,
        user: &UserId,
        id: i64,
        change: &TaskChange,
    ) -> Result<Task, Error> {
        with_write_connection!(self, conn => update_task(conn.into(), user, id, change).await)
    }

    pub async fn complete_task(&self, user: &UserId, id: i64) -> Result<Task, Error> {
        with_write_connection!(self, conn => complete_task(conn.into(), user, id).await)
    }

    pub async fn delete_task(&self, user: &UserId, id: i64) -> Result<Task, Error> {
        with_write_connection!(self, conn => delete_task(conn.into(), user, id).await)
    }
}

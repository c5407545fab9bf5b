//! Checked values. Handlers parse wire input into these at the edge, so the
//! store never holds an unchecked string. Lengths count Unicode scalar values
//! (Rust `char`s), not bytes, as the Python system's `len()` did.

use crate::error::ValidationError;

/// Longest task title, in characters.
pub const TITLE_MAX_CHARS: usize = 200;
/// Longest task description, in characters.
pub const DESCRIPTION_MAX_CHARS: usize = 1000;
/// Longest idempotency key, in characters.
pub const REQUEST_ID_MAX_CHARS: usize = 128;
/// Longest stored message text, in characters.
pub const MESSAGE_MAX_CHARS: usize = 200_000;

/// The verified user a call acts for (from the `x-user-id` metadata key).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(String);

impl UserId {
    /// A user id: trimmed, not blank, at most 255 bytes, no control characters.
    pub fn parse(raw: &str) -> Option<Self> {
        taskagent_common::user::user_id(raw).map(|id| Self(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A task title: trimmed, 1 to 200 characters, no NUL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskTitle(String);

impl TaskTitle {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let title = raw.trim();
        if title.is_empty() {
            return Err(ValidationError::TitleRequired);
        }
        reject_nul(title, "Title")?;
        if title.chars().count() > TITLE_MAX_CHARS {
            return Err(ValidationError::TitleTooLong);
        }
        Ok(Self(title.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A task description: trimmed, at most 1000 characters, no NUL. Blank means
/// "no description".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDescription(Option<String>);

impl TaskDescription {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let text = raw.trim();
        reject_nul(text, "Description")?;
        if text.chars().count() > DESCRIPTION_MAX_CHARS {
            return Err(ValidationError::DescriptionTooLong);
        }
        Ok(Self((!text.is_empty()).then(|| text.to_owned())))
    }

    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// A new task, checked.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub title: TaskTitle,
    pub description: TaskDescription,
    /// Idempotency key; `None` when the caller sent none.
    pub request_id: Option<String>,
}

impl NewTask {
    pub fn parse(
        title: &str,
        description: Option<&str>,
        request_id: &str,
    ) -> Result<Self, ValidationError> {
        let request_id = request_id.trim();
        reject_nul(request_id, "Request ID")?;
        if request_id.chars().count() > REQUEST_ID_MAX_CHARS {
            return Err(ValidationError::RequestIdTooLong);
        }
        Ok(Self {
            title: TaskTitle::parse(title)?,
            description: TaskDescription::parse(description.unwrap_or_default())?,
            request_id: (!request_id.is_empty()).then(|| request_id.to_owned()),
        })
    }
}

/// A change to a task: at least one of title and description.
#[derive(Debug, Clone)]
pub struct TaskChange {
    pub title: Option<TaskTitle>,
    pub description: Option<TaskDescription>,
    pub completed: Option<bool>,
}

impl TaskChange {
    pub fn parse(
        title: Option<&str>,
        description: Option<&str>,
        completed: Option<bool>,
    ) -> Result<Self, ValidationError> {
        if title.is_none() && description.is_none() && completed.is_none() {
            return Err(ValidationError::NothingToUpdate);
        }
        Ok(Self {
            title: title.map(TaskTitle::parse).transpose()?,
            description: description.map(TaskDescription::parse).transpose()?,
            completed,
        })
    }
}

/// Which tasks a list returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatusFilter {
    #[default]
    All,
    Pending,
    Completed,
}

impl StatusFilter {
    /// The `completed` value the filter selects, if it selects one.
    pub fn completed(self) -> Option<bool> {
        match self {
            Self::All => None,
            Self::Pending => Some(false),
            Self::Completed => Some(true),
        }
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
    Tool,
    System,
    /// A failed turn, recorded for the user; never sent to the model.
    Error,
}

impl Role {
    /// The value stored in `messages.role`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Tool => "tool",
            Self::System => "system",
            Self::Error => "error",
        }
    }

    pub fn from_stored(s: &str) -> Option<Self> {
        Some(match s {
            "user" => Self::User,
            "assistant" => Self::Assistant,
            "tool" => Self::Tool,
            "system" => Self::System,
            "error" => Self::Error,
            _ => return None,
        })
    }
}

/// A tool call the model asked for, stored with its assistant message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// A message to append, checked.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub role: Role,
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub tool_call_id: Option<String>,
}

impl NewMessage {
    pub fn parse(
        role: Option<Role>,
        content: String,
        tool_calls: Vec<ToolCall>,
        tool_call_id: String,
    ) -> Result<Self, ValidationError> {
        let role = role.ok_or(ValidationError::RoleRequired)?;
        reject_nul(&content, "Message content")?;
        if content.chars().count() > MESSAGE_MAX_CHARS {
            return Err(ValidationError::MessageTooLong);
        }
        if !tool_calls.is_empty() && role != Role::Assistant {
            return Err(ValidationError::ToolCallsOutsideAssistant);
        }
        for call in &tool_calls {
            if call.id.trim().is_empty() || call.name.trim().is_empty() {
                return Err(ValidationError::ToolCallIncomplete);
            }
            reject_nul(&call.id, "Tool call id")?;
            reject_nul(&call.name, "Tool name")?;
            reject_nul(&call.arguments, "Tool call arguments")?;
        }
        reject_nul(&tool_call_id, "Tool call id")?;
        let tool_call_id = tool_call_id.trim().to_owned();
        if role == Role::Tool && tool_call_id.is_empty() {
            return Err(ValidationError::ToolCallIdRequired);
        }
        Ok(Self {
            role,
            content,
            tool_calls,
            tool_call_id: (!tool_call_id.is_empty()).then_some(tool_call_id),
        })
    }
}

/// A conversation title: trimmed, at most 200 characters, no NUL.
pub fn parse_conversation_title(raw: &str) -> Result<String, ValidationError> {
    let title = raw.trim();
    reject_nul(title, "Title")?;
    if title.chars().count() > TITLE_MAX_CHARS {
        return Err(ValidationError::TitleTooLong);
    }
    Ok(title.to_owned())
}

/// PostgreSQL cannot store NUL in text, and no person types one: reject it
/// up front with a clear message instead of failing in the database.
fn reject_nul(text: &str, field: &'static str) -> Result<(), ValidationError> {
    if text.contains('\0') {
        Err(ValidationError::NulCharacter(field))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_is_trimmed_and_counted_in_scalar_values() {
        assert_eq!(
            TaskTitle::parse("  Buy milk \n").unwrap().as_str(),
            "Buy milk"
        );
        assert!(TaskTitle::parse(&"🎉".repeat(200)).is_ok());
        // "e" + COMBINING ACUTE ACCENT is two scalar values.
        assert!(TaskTitle::parse(&"e\u{301}".repeat(100)).is_ok());
        assert_eq!(
            TaskTitle::parse(&"e\u{301}".repeat(101)),
            Err(ValidationError::TitleTooLong)
        );
    }

    #[test]
    fn blank_and_nul_titles_are_rejected() {
        assert_eq!(
            TaskTitle::parse(" \t "),
            Err(ValidationError::TitleRequired)
        );
        assert_eq!(
            TaskTitle::parse("a\0b"),
            Err(ValidationError::NulCharacter("Title"))
        );
    }

    #[test]
    fn user_id_must_be_printable_and_present() {
        assert!(UserId::parse("  ").is_none());
        assert!(UserId::parse("a\nb").is_none());
        assert_eq!(UserId::parse(" u1 ").unwrap().as_str(), "u1");
    }

    #[test]
    fn update_needs_a_field() {
        assert_eq!(
            TaskChange::parse(None, None, None).err(),
            Some(ValidationError::NothingToUpdate)
        );
    }
}

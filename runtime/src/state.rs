//! The states of executions and task runs: one enum each, written in the
//! history, the `--json` events and the API as the lower-case word
//! [`as_str`](ExecutionState::as_str) returns, and read back with `parse`.

use std::fmt;
use std::str::FromStr;

/// Where an execution is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExecutionState {
    /// Accepted, waiting for its turn (a concurrency limit of its flow).
    Queued,
    Running,
    /// An approval waits; `resume` continues it once decided.
    Paused,
    Succeeded,
    Failed,
    /// Stopped on purpose (a cancel request, a newer run of its
    /// concurrency key): it will not be resumed.
    Cancelled,
    /// Its process stopped before it ended (a signal, a crash): `resume`
    /// runs on from what succeeded.
    Interrupted,
}

impl ExecutionState {
    pub const ALL: [ExecutionState; 7] = [
        ExecutionState::Queued,
        ExecutionState::Running,
        ExecutionState::Paused,
        ExecutionState::Succeeded,
        ExecutionState::Failed,
        ExecutionState::Cancelled,
        ExecutionState::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionState::Queued => "queued",
            ExecutionState::Running => "running",
            ExecutionState::Paused => "paused",
            ExecutionState::Succeeded => "succeeded",
            ExecutionState::Failed => "failed",
            ExecutionState::Cancelled => "cancelled",
            ExecutionState::Interrupted => "interrupted",
        }
    }

    /// An execution in one of these states never runs again: it can be
    /// neither run on nor resumed (only rerun as a new execution).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            ExecutionState::Succeeded | ExecutionState::Failed | ExecutionState::Cancelled
        )
    }

    /// Every state's word, for command-line choices.
    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|s| s.as_str()).collect()
    }
}

/// Where one task run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
    /// An approval waits and the run detached: the execution pauses here.
    Paused,
    /// It was running when its execution's process stopped (recorded by
    /// the history, never reported by the executor).
    Interrupted,
}

impl TaskState {
    pub const ALL: [TaskState; 8] = [
        TaskState::Pending,
        TaskState::Running,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::Skipped,
        TaskState::Cancelled,
        TaskState::Paused,
        TaskState::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Skipped => "skipped",
            TaskState::Cancelled => "cancelled",
            TaskState::Paused => "paused",
            TaskState::Interrupted => "interrupted",
        }
    }

    /// Whether the run has come to an end (for now: a paused gate may go on
    /// after a resume).
    pub fn settled(self) -> bool {
        !matches!(self, TaskState::Pending | TaskState::Running)
    }
}

/// A state word that is not one of ours (a history written by something else).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown state `{0}`")]
pub struct UnknownState(pub String);

macro_rules! words {
    ($ty:ty) => {
        impl FromStr for $ty {
            type Err = UnknownState;
            fn from_str(s: &str) -> Result<Self, UnknownState> {
                <$ty>::ALL
                    .into_iter()
                    .find(|x| x.as_str() == s)
                    .ok_or_else(|| UnknownState(s.to_string()))
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

words!(ExecutionState);
words!(TaskState);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_reads_back_from_its_word() {
        for s in ExecutionState::ALL {
            assert_eq!(s.as_str().parse::<ExecutionState>(), Ok(s));
        }
        for s in TaskState::ALL {
            assert_eq!(s.as_str().parse::<TaskState>(), Ok(s));
        }
        assert_eq!("Running".parse::<TaskState>(), Err(UnknownState("Running".into())));
    }
}

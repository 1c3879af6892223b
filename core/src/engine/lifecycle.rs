//! The ticket state machine of the service desk: which operator action is allowed from which
//! state, and where it leads. Refusals say what is allowed instead (the API answers 409).
//!
//! ```text
//! new -> acknowledged -> in_progress <-> pending -> resolved -> closed
//!   \________\_____________\____________\_________/    |  ^
//!                                   reopen <-----------+  |  (close only from resolved)
//! ```

use std::fmt;

use super::model::TicketState;

/// What an operator (or monitoring) does to a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Acknowledge,
    /// Start work (also implied by assign/comment on an acknowledged ticket).
    Start,
    /// Waiting on a user or a vendor: the resolution clock pauses.
    Pend,
    /// Back from pending.
    Resume,
    Resolve,
    Close,
    Reopen,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Acknowledge => "acknowledge",
            Action::Start => "start",
            Action::Pend => "pend",
            Action::Resume => "resume",
            Action::Resolve => "resolve",
            Action::Close => "close",
            Action::Reopen => "reopen",
        }
    }
}

/// An action the ticket's state does not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub from: TicketState,
    pub action: Action,
    /// Actions that are allowed from `from`.
    pub allowed: Vec<Action>,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let allowed: Vec<&str> = self.allowed.iter().map(|a| a.as_str()).collect();
        write!(
            f,
            "cannot {} a ticket that is {}",
            self.action.as_str(),
            self.from.as_str()
        )?;
        if allowed.is_empty() {
            write!(f, " (it is final)")
        } else {
            write!(f, " (allowed: {})", allowed.join(", "))
        }
    }
}

impl std::error::Error for Refused {}

const ALL: [Action; 7] = [
    Action::Acknowledge,
    Action::Start,
    Action::Pend,
    Action::Resume,
    Action::Resolve,
    Action::Close,
    Action::Reopen,
];

/// The transition table: where `action` leads from `from`, if anywhere.
fn target(from: TicketState, action: Action) -> Option<TicketState> {
    use Action as A;
    use TicketState as S;
    match (from, action) {
        (S::New, A::Acknowledge) => Some(S::Acknowledged),
        (S::New | S::Acknowledged, A::Start) => Some(S::InProgress),
        (S::Acknowledged | S::InProgress, A::Pend) => Some(S::Pending),
        (S::Pending, A::Resume) => Some(S::InProgress),
        (S::New | S::Acknowledged | S::InProgress | S::Pending, A::Resolve) => Some(S::Resolved),
        (S::Resolved, A::Close) => Some(S::Closed),
        // A reopened ticket goes back to work.
        (S::Resolved | S::Closed, A::Reopen) => Some(S::InProgress),
        _ => None,
    }
}

/// Where `action` takes a ticket in state `from`, or why it may not.
pub fn next(from: TicketState, action: Action) -> Result<TicketState, Refused> {
    target(from, action).ok_or_else(|| Refused {
        from,
        action,
        allowed: ALL
            .iter()
            .copied()
            .filter(|a| target(from, *a).is_some())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action as A;
    use TicketState as S;

    const STATES: [TicketState; 6] = [
        S::New,
        S::Acknowledged,
        S::InProgress,
        S::Pending,
        S::Resolved,
        S::Closed,
    ];

    /// Every (state, action) pair: the allowed ones and where they lead; all others refused.
    #[test]
    fn every_transition_valid_and_invalid() {
        let valid: &[(TicketState, Action, TicketState)] = &[
            (S::New, A::Acknowledge, S::Acknowledged),
            (S::New, A::Start, S::InProgress),
            (S::New, A::Resolve, S::Resolved),
            (S::Acknowledged, A::Start, S::InProgress),
            (S::Acknowledged, A::Pend, S::Pending),
            (S::Acknowledged, A::Resolve, S::Resolved),
            (S::InProgress, A::Pend, S::Pending),
            (S::InProgress, A::Resolve, S::Resolved),
            (S::Pending, A::Resume, S::InProgress),
            (S::Pending, A::Resolve, S::Resolved),
            (S::Resolved, A::Close, S::Closed),
            (S::Resolved, A::Reopen, S::InProgress),
            (S::Closed, A::Reopen, S::InProgress),
        ];
        for from in STATES {
            for action in ALL {
                let want = valid
                    .iter()
                    .find(|(f, a, _)| *f == from && *a == action)
                    .map(|(_, _, to)| *to);
                match (next(from, action), want) {
                    (Ok(to), Some(w)) => assert_eq!(to, w, "{from:?} {action:?}"),
                    (Err(refused), None) => {
                        let msg = refused.to_string();
                        assert!(!msg.contains('\n'), "{msg}");
                        assert!(msg.contains(from.as_str()) && msg.contains(action.as_str()));
                        // What it lists as allowed really is.
                        for a in &refused.allowed {
                            assert!(next(from, *a).is_ok(), "{from:?} lists {a:?}");
                        }
                    }
                    (got, want) => panic!("{from:?} {action:?}: got {got:?}, want {want:?}"),
                }
            }
        }
    }

    #[test]
    fn close_only_from_resolved_and_the_message_says_so() {
        let err = next(S::InProgress, A::Close).expect_err("refused");
        assert_eq!(
            err.to_string(),
            "cannot close a ticket that is in_progress (allowed: pend, resolve)"
        );
    }
}

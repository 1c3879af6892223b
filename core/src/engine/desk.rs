//! The service desk's operator side: actions on tickets and tickets opened by people.

use serde::{Deserialize, Serialize};

use super::policy::Level;
use crate::rules::Category;
use crate::time::Millis;

/// What an operator does to a ticket (`POST /api/v1/tickets/{id}/{action}`, `tocsin ticket ...`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum TicketAction {
    /// Take it: stops the response clock; the operator becomes the assignee if there is none.
    Acknowledge { note: Option<String> },
    /// Give it to a person and/or transfer it to another group (a transfer needs a reason).
    Assign {
        assignee: Option<String>,
        group: Option<String>,
        reason: Option<String>,
    },
    /// A line of diagnosis or a note; on a resolved monitoring ticket it holds the automatic close.
    Comment { text: String },
    /// Waiting on a user or a vendor: the resolution clock pauses.
    Pend { reason: String },
    /// Back from pending: the resolution clock runs again.
    Resume { note: Option<String> },
    /// Hand it to the next escalation level now (a complaint is recorded as such).
    Escalate { reason: String, complaint: bool },
    /// Fixed: resolution notes and a cause code are required.
    Resolve { notes: String, cause_code: String },
    /// Only from resolved, once the fix is confirmed.
    Close { note: Option<String> },
    /// Back to work (from resolved, or closed): escalates.
    Reopen { reason: String },
}

impl TicketAction {
    pub fn name(&self) -> &'static str {
        match self {
            TicketAction::Acknowledge { .. } => "ack",
            TicketAction::Assign { .. } => "assign",
            TicketAction::Comment { .. } => "comment",
            TicketAction::Pend { .. } => "pending",
            TicketAction::Resume { .. } => "resume",
            TicketAction::Escalate { .. } => "escalate",
            TicketAction::Resolve { .. } => "resolve",
            TicketAction::Close { .. } => "close",
            TicketAction::Reopen { .. } => "reopen",
        }
    }
}

/// `incident` (something is broken: `INC-`) or `request` (a service request: `REQ-`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TicketKind {
    #[default]
    Incident,
    Request,
}

impl TicketKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketKind::Incident => "incident",
            TicketKind::Request => "request",
        }
    }
}

/// Who reported a ticket opened by a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reporter {
    pub name: String,
    #[serde(default)]
    pub department: Option<String>,
    /// Phone or e-mail.
    #[serde(default)]
    pub contact: Option<String>,
}

/// A ticket opened by a person (`POST /api/v1/tickets`, `tocsin ticket new`): a service
/// request or a fault report, with the same fields as a monitoring ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManualTicket {
    #[serde(default)]
    pub kind: TicketKind,
    pub summary: String,
    /// Symptoms, error messages, what was tried.
    #[serde(default)]
    pub description: String,
    pub reporter: Reporter,
    /// Default: software.
    #[serde(default)]
    pub category: Option<Category>,
    /// Business impact (default: the node's criticality label, else the policy's default).
    #[serde(default)]
    pub impact: Option<Level>,
    /// Default: medium for faults, low for requests.
    #[serde(default)]
    pub urgency: Option<Level>,
    #[serde(default)]
    pub site: Option<String>,
    /// A node tocsin knows: its inventory fills the environment.
    #[serde(default)]
    pub node: Option<String>,
    /// Services affected.
    #[serde(default)]
    pub services: Vec<String>,
    /// What the reporter says of the environment (versions, hardware, network).
    #[serde(default)]
    pub environment: Option<serde_json::Value>,
    /// When it started (default: now), ms since the epoch.
    #[serde(default)]
    pub started_at: Option<Millis>,
    /// Assignment group (default: the routing rules).
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub assignee: Option<String>,
}

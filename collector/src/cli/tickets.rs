//! `tocsin ticket …`: the ticket subcommands, the request each one makes and its body.

use clap::{Args, Subcommand};
use serde_json::{Map, Value as Json, json};

use super::{ApiClient, CliError};

/// What `tocsin ticket` does besides showing a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum TicketCommand {
    /// Show a ticket with its full record and log (same as `tocsin ticket ID`).
    Show {
        /// Ticket number (INC-000001, REQ-000001) or id.
        id: String,
    },
    /// Open a ticket for a person: a fault report (INC-) or a service request (REQ-).
    New(Box<NewTicket>),
    /// Take it: stops the response clock; you become the assignee if there is none.
    Ack {
        id: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Give it to a person and/or transfer it to another group (a transfer needs --reason).
    Assign {
        id: String,
        /// The person who works on it.
        #[arg(long = "to", value_name = "PERSON")]
        to: Option<String>,
        /// The assignment group to transfer it to.
        #[arg(long)]
        group: Option<String>,
        /// Why (needed for a transfer to another group).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Add a line of diagnosis or a note to the log.
    Comment {
        id: String,
        /// The text (several words are joined with spaces).
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// Waiting on the user or a vendor: the resolution clock pauses.
    Pending {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Back from pending: the resolution clock runs again.
    Resume {
        id: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Hand it to the next escalation level now.
    Escalate {
        id: String,
        #[arg(long)]
        reason: String,
        /// The user complained (recorded as a complaint).
        #[arg(long)]
        complaint: bool,
    },
    /// Fixed: resolution notes and a cause code are required.
    Resolve {
        id: String,
        /// What was done to fix it.
        #[arg(long)]
        notes: String,
        /// Cause code (e.g. hardware-failure, configuration-error).
        #[arg(long = "cause", value_name = "CODE")]
        cause: String,
    },
    /// Close a resolved ticket once the user confirmed the fix.
    Close {
        id: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Back to work (a resolved or closed ticket).
    Reopen {
        id: String,
        #[arg(long)]
        reason: String,
    },
}

/// `tocsin ticket new`: what a dispatcher records for a person's call or e-mail.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct NewTicket {
    /// One line: what is wrong or what is asked for.
    #[arg(long)]
    pub summary: String,
    /// incident (something is broken: INC-) or request (a service request: REQ-).
    #[arg(long, value_parser = ["incident", "request"])]
    pub kind: Option<String>,
    /// Who reported it.
    #[arg(long, value_name = "NAME")]
    pub reporter: String,
    #[arg(long)]
    pub department: Option<String>,
    /// Phone or e-mail of the reporter.
    #[arg(long)]
    pub contact: Option<String>,
    /// Symptoms, error messages, what was tried.
    #[arg(long)]
    pub description: Option<String>,
    /// hardware | software | network | configuration
    #[arg(long, value_parser = ["hardware", "software", "network", "configuration"])]
    pub category: Option<String>,
    /// Business impact: high | medium | low
    #[arg(long, value_parser = ["high", "medium", "low"])]
    pub impact: Option<String>,
    /// high | medium | low
    #[arg(long, value_parser = ["high", "medium", "low"])]
    pub urgency: Option<String>,
    #[arg(long)]
    pub site: Option<String>,
    /// A node tocsin monitors (its inventory fills the environment).
    #[arg(long)]
    pub node: Option<String>,
    /// A service affected (repeatable).
    #[arg(long = "service", value_name = "SERVICE")]
    pub services: Vec<String>,
    /// When it started (RFC 3339, e.g. 2026-11-29T16:00:00Z); default now.
    #[arg(long, value_name = "TIME")]
    pub started: Option<String>,
    /// Assignment group (default: the routing rules).
    #[arg(long)]
    pub group: Option<String>,
    #[arg(long)]
    pub assignee: Option<String>,
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Insert `v` under `k` when it is set.
fn put(m: &mut Map<String, Json>, k: &str, v: &Option<String>) {
    if let Some(v) = v {
        m.insert(k.into(), json!(v));
    }
}

impl NewTicket {
    /// The body of `POST /api/v1/tickets`.
    pub fn body(&self) -> Json {
        let mut reporter = Map::new();
        reporter.insert("name".into(), json!(self.reporter));
        put(&mut reporter, "department", &self.department);
        put(&mut reporter, "contact", &self.contact);
        let mut m = Map::new();
        m.insert("summary".into(), json!(self.summary));
        m.insert("reporter".into(), Json::Object(reporter));
        put(&mut m, "kind", &self.kind);
        put(&mut m, "description", &self.description);
        put(&mut m, "category", &self.category);
        put(&mut m, "impact", &self.impact);
        put(&mut m, "urgency", &self.urgency);
        put(&mut m, "site", &self.site);
        put(&mut m, "node", &self.node);
        put(&mut m, "started_at", &self.started);
        put(&mut m, "group", &self.group);
        put(&mut m, "assignee", &self.assignee);
        if !self.services.is_empty() {
            m.insert("services".into(), json!(self.services));
        }
        Json::Object(m)
    }
}

impl TicketCommand {
    /// The API path and, for a change, the JSON body to POST (None: a GET).
    pub fn request(&self) -> Result<(String, Option<Json>), CliError> {
        let action = |id: &str, name: &str, body: Map<String, Json>| {
            (
                format!("/api/v1/tickets/{}/{name}", enc(id)),
                Some(Json::Object(body)),
            )
        };
        let mut m = Map::new();
        Ok(match self {
            TicketCommand::Show { id } => (format!("/api/v1/tickets/{}", enc(id)), None),
            TicketCommand::New(t) => ("/api/v1/tickets".to_string(), Some(t.body())),
            TicketCommand::Ack { id, note } => {
                put(&mut m, "note", note);
                action(id, "ack", m)
            }
            TicketCommand::Assign {
                id,
                to,
                group,
                reason,
            } => {
                if to.is_none() && group.is_none() {
                    return Err(CliError::Usage(
                        "ticket assign: give --to PERSON and/or --group GROUP (a transfer needs --reason)"
                            .into(),
                    ));
                }
                put(&mut m, "assignee", to);
                put(&mut m, "group", group);
                put(&mut m, "reason", reason);
                action(id, "assign", m)
            }
            TicketCommand::Comment { id, text } => {
                m.insert("text".into(), json!(text.join(" ")));
                action(id, "comment", m)
            }
            TicketCommand::Pending { id, reason } => {
                m.insert("reason".into(), json!(reason));
                action(id, "pending", m)
            }
            TicketCommand::Resume { id, note } => {
                put(&mut m, "note", note);
                action(id, "resume", m)
            }
            TicketCommand::Escalate {
                id,
                reason,
                complaint,
            } => {
                m.insert("reason".into(), json!(reason));
                if *complaint {
                    m.insert("complaint".into(), json!(true));
                }
                action(id, "escalate", m)
            }
            TicketCommand::Resolve { id, notes, cause } => {
                m.insert("notes".into(), json!(notes));
                m.insert("cause_code".into(), json!(cause));
                action(id, "resolve", m)
            }
            TicketCommand::Close { id, note } => {
                put(&mut m, "note", note);
                action(id, "close", m)
            }
            TicketCommand::Reopen { id, reason } => {
                m.insert("reason".into(), json!(reason));
                action(id, "reopen", m)
            }
        })
    }
}

/// `tocsin ticket ID` (show) or `tocsin ticket ACTION …`: the ticket as the API answers.
pub async fn ticket_command(
    client: &ApiClient,
    id: Option<&str>,
    action: Option<&TicketCommand>,
) -> Result<Json, CliError> {
    let (path, body) = match (id, action) {
        (_, Some(a)) => a.request()?,
        (Some(id), None) => (format!("/api/v1/tickets/{}", enc(id)), None),
        (None, None) => {
            return Err(CliError::Usage(
                "ticket: give a ticket number (tocsin ticket INC-000001) or an action (tocsin ticket ack INC-000001); see tocsin ticket --help"
                    .into(),
            ));
        }
    };
    match body {
        Some(b) => client.post(&path, Some(&b)).await,
        None => client.get(&path).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(subcommand)]
        cmd: TicketCommand,
    }

    fn req(args: &[&str]) -> (String, Option<Json>) {
        let mut argv = vec!["t"];
        argv.extend_from_slice(args);
        T::try_parse_from(argv)
            .expect("parses")
            .cmd
            .request()
            .expect("request")
    }

    #[test]
    fn actions_make_their_requests() {
        assert_eq!(
            req(&["ack", "INC-000001", "--note", "on it"]),
            (
                "/api/v1/tickets/INC-000001/ack".into(),
                Some(json!({"note": "on it"}))
            )
        );
        assert_eq!(
            req(&["ack", "7"]),
            ("/api/v1/tickets/7/ack".into(), Some(json!({})))
        );
        assert_eq!(
            req(&[
                "assign",
                "INC-000001",
                "--to",
                "bob",
                "--group",
                "network",
                "--reason",
                "switch"
            ])
            .1,
            Some(json!({"assignee": "bob", "group": "network", "reason": "switch"}))
        );
        assert_eq!(
            req(&["comment", "INC-000001", "checked", "the", "logs"]).1,
            Some(json!({"text": "checked the logs"}))
        );
        assert_eq!(
            req(&["pending", "REQ-000002", "--reason", "vendor"]),
            (
                "/api/v1/tickets/REQ-000002/pending".into(),
                Some(json!({"reason": "vendor"}))
            )
        );
        assert_eq!(
            req(&["escalate", "1", "--reason", "angry", "--complaint"]).1,
            Some(json!({"reason": "angry", "complaint": true}))
        );
        assert_eq!(
            req(&["resolve", "1", "--notes", "swapped", "--cause", "hw"]),
            (
                "/api/v1/tickets/1/resolve".into(),
                Some(json!({"notes": "swapped", "cause_code": "hw"}))
            )
        );
        assert_eq!(
            req(&["close", "1"]),
            ("/api/v1/tickets/1/close".into(), Some(json!({})))
        );
        assert_eq!(
            req(&["reopen", "1", "--reason", "again"]).1,
            Some(json!({"reason": "again"}))
        );
        assert_eq!(
            req(&["resume", "1"]).0,
            "/api/v1/tickets/1/resume".to_string()
        );
        assert_eq!(
            req(&["show", "INC 1"]),
            ("/api/v1/tickets/INC+1".into(), None)
        );
        let (path, body) = req(&[
            "new",
            "--summary",
            "VPN account",
            "--kind",
            "request",
            "--reporter",
            "Ann",
            "--department",
            "Sales",
            "--service",
            "vpn",
            "--service",
            "mail",
        ]);
        assert_eq!(path, "/api/v1/tickets");
        assert_eq!(
            body,
            Some(json!({"summary": "VPN account", "kind": "request",
                "reporter": {"name": "Ann", "department": "Sales"}, "services": ["vpn", "mail"]}))
        );
    }

    #[test]
    fn incomplete_commands_are_refused() {
        let parse = |args: &[&str]| {
            let mut argv = vec!["t"];
            argv.extend_from_slice(args);
            T::try_parse_from(argv)
        };
        assert!(parse(&["resolve", "1", "--notes", "x"]).is_err());
        assert!(parse(&["pending", "1"]).is_err());
        assert!(parse(&["comment", "1"]).is_err());
        assert!(parse(&["new", "--summary", "s"]).is_err());
        assert!(
            parse(&[
                "new",
                "--summary",
                "s",
                "--reporter",
                "a",
                "--kind",
                "change"
            ])
            .is_err()
        );
        let err = parse(&["assign", "1"])
            .expect("parses")
            .cmd
            .request()
            .expect_err("nothing to assign");
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--to PERSON"), "{err}");
    }
}

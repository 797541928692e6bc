//! Data that crosses the wire between the browser and the server functions.
//! Nothing here carries a password, a hash or a session id.

use serde::{Deserialize, Serialize};

/// Where an account stands in the approval workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountStatus {
    Pending,
    Approved,
    Rejected,
    Disabled,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Pending => "pending",
            AccountStatus::Approved => "approved",
            AccountStatus::Rejected => "rejected",
            AccountStatus::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => AccountStatus::Pending,
            "approved" => AccountStatus::Approved,
            "rejected" => AccountStatus::Rejected,
            "disabled" => AccountStatus::Disabled,
            _ => return None,
        })
    }
}

/// The logged-in user as the pages see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentUser {
    pub id: i64,
    pub username: String,
    pub is_admin: bool,
}

/// One row of the admin's users table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSummary {
    pub id: i64,
    pub username: String,
    pub email: Option<String>,
    pub status: AccountStatus,
    pub is_admin: bool,
    /// Unix seconds.
    pub created_at: i64,
}

/// What an admin can do to an account from the admin page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminAction {
    Approve,
    Reject,
    Disable,
    Enable,
    GrantAdmin,
    RevokeAdmin,
}

impl AdminAction {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "approve" => AdminAction::Approve,
            "reject" => AdminAction::Reject,
            "disable" => AdminAction::Disable,
            "enable" => AdminAction::Enable,
            "grant-admin" => AdminAction::GrantAdmin,
            "revoke-admin" => AdminAction::RevokeAdmin,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AdminAction::Approve => "approve",
            AdminAction::Reject => "reject",
            AdminAction::Disable => "disable",
            AdminAction::Enable => "enable",
            AdminAction::GrantAdmin => "grant-admin",
            AdminAction::RevokeAdmin => "revoke-admin",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            AdminAction::Approve => "Approve",
            AdminAction::Reject => "Reject",
            AdminAction::Disable => "Disable",
            AdminAction::Enable => "Enable",
            AdminAction::GrantAdmin => "Make admin",
            AdminAction::RevokeAdmin => "Revoke admin",
        }
    }

    /// The actions that make sense for an account in its present state.
    pub fn available(user: &UserSummary) -> Vec<AdminAction> {
        let mut actions = match user.status {
            AccountStatus::Pending => vec![AdminAction::Approve, AdminAction::Reject],
            AccountStatus::Approved => vec![AdminAction::Disable],
            AccountStatus::Rejected => vec![AdminAction::Approve],
            AccountStatus::Disabled => vec![AdminAction::Enable],
        };
        if user.status == AccountStatus::Approved {
            actions.push(if user.is_admin { AdminAction::RevokeAdmin } else { AdminAction::GrantAdmin });
        }
        actions
    }
}

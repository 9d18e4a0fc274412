//! The policy engine (DESIGN section 4). Pure: no I/O, compiled once per config.
//!
//! - [`Operation`] and [`TargetKind`] name what a request does and to what.
//! - [`Engine::compile`] turns a validated [`crate::config::Config`] into per-scope, per-server
//!   rule indexes; compile findings (bad globs, unknown operations) are diagnostics.
//! - [`Engine::decide`] answers one request: deny wins, then allow, else deny.
//! - [`Engine::list_permitted`] and [`Engine::item_visible`] implement list filtering.
//! - [`Engine::explain`] traces every rule of the subject's policies.

mod engine;
mod explain;
mod lint;
mod pattern;
pub mod uri;

use std::fmt;

pub use engine::{Decision, Effect, Engine, ListView, Reason, Request, RuleInfo, Subject};
pub use explain::{Explanation, RuleStatus, RuleTrace};
pub use pattern::Pattern;

/// What a request does. Each maps from one or more MCP methods.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Operation {
    ToolsList,
    ToolCall,
    ResourcesList,
    ResourceTemplatesList,
    ResourceRead,
    ResourceSubscribe,
    PromptsList,
    PromptGet,
    CompletionComplete,
    LoggingSetLevel,
    SamplingCreateMessage,
    ElicitationCreate,
    RootsList,
    /// Any other method, denied unless a rule names it exactly (`custom:<method>`).
    Custom(Box<str>),
}

/// The operations a glob may match (never the custom ones).
pub const KNOWN_OPERATIONS: [Operation; 13] = [
    Operation::ToolsList,
    Operation::ToolCall,
    Operation::ResourcesList,
    Operation::ResourceTemplatesList,
    Operation::ResourceRead,
    Operation::ResourceSubscribe,
    Operation::PromptsList,
    Operation::PromptGet,
    Operation::CompletionComplete,
    Operation::LoggingSetLevel,
    Operation::SamplingCreateMessage,
    Operation::ElicitationCreate,
    Operation::RootsList,
];

impl Operation {
    /// The name used in rules, e.g. `tool:call`.
    pub fn name(&self) -> std::borrow::Cow<'static, str> {
        use Operation::*;
        let s = match self {
            ToolsList => "tools:list",
            ToolCall => "tool:call",
            ResourcesList => "resources:list",
            ResourceTemplatesList => "resourceTemplates:list",
            ResourceRead => "resource:read",
            ResourceSubscribe => "resource:subscribe",
            PromptsList => "prompts:list",
            PromptGet => "prompt:get",
            CompletionComplete => "completion:complete",
            LoggingSetLevel => "logging:setLevel",
            SamplingCreateMessage => "sampling:createMessage",
            ElicitationCreate => "elicitation:create",
            RootsList => "roots:list",
            Custom(m) => return format!("custom:{m}").into(),
        };
        s.into()
    }

    /// Parse a rule operation name (no globs).
    pub fn parse(s: &str) -> Option<Operation> {
        if let Some(m) = s.strip_prefix("custom:") {
            return (!m.is_empty()).then(|| Operation::Custom(m.into()));
        }
        KNOWN_OPERATIONS.iter().find(|o| o.name() == s).cloned()
    }

    /// The operation of an MCP method; `None` for lifecycle traffic (initialize, ping,
    /// notifications, `server/discover`), which needs an authenticated subject only.
    pub fn from_method(method: &str) -> Option<Operation> {
        Operation::of_spec_method(method).unwrap_or_else(|| Some(Operation::Custom(method.into())))
    }

    /// Whether `method` is one of the MCP specification (else a custom method).
    pub fn is_spec_method(method: &str) -> bool {
        Operation::of_spec_method(method).is_some()
    }

    /// [`Operation::from_method`] for a method of the specification; `None` for any other.
    fn of_spec_method(method: &str) -> Option<Option<Operation>> {
        use Operation::*;
        Some(Some(match method {
            "initialize"
            | "server/discover"
            | "ping"
            | "notifications/initialized"
            | "notifications/cancelled"
            | "notifications/progress" => return Some(None),
            "tools/list" => ToolsList,
            "tools/call" => ToolCall,
            "resources/list" => ResourcesList,
            "resources/templates/list" => ResourceTemplatesList,
            "resources/read" => ResourceRead,
            "resources/subscribe" | "resources/unsubscribe" | "subscriptions/listen" => {
                ResourceSubscribe
            }
            "prompts/list" => PromptsList,
            "prompts/get" => PromptGet,
            "completion/complete" => CompletionComplete,
            "logging/setLevel" => LoggingSetLevel,
            "sampling/createMessage" => SamplingCreateMessage,
            "elicitation/create" => ElicitationCreate,
            "roots/list" => RootsList,
            _ => return None,
        }))
    }

    /// The operation's bit in a rule's operation set (0 for custom methods).
    #[inline]
    pub(crate) fn bit(&self) -> u16 {
        use Operation::*;
        let i = match self {
            ToolsList => 0,
            ToolCall => 1,
            ResourcesList => 2,
            ResourceTemplatesList => 3,
            ResourceRead => 4,
            ResourceSubscribe => 5,
            PromptsList => 6,
            PromptGet => 7,
            CompletionComplete => 8,
            LoggingSetLevel => 9,
            SamplingCreateMessage => 10,
            ElicitationCreate => 11,
            RootsList => 12,
            Custom(_) => return 0,
        };
        1u16 << i
    }

    /// The target kinds that fit this operation.
    pub fn kinds(&self) -> &'static [TargetKind] {
        use Operation::*;
        use TargetKind as K;
        match self {
            ToolsList | ToolCall => &[K::Tool],
            ResourcesList | ResourceRead | ResourceSubscribe => &[K::Resource],
            ResourceTemplatesList => &[K::ResourceTemplate],
            PromptsList | PromptGet => &[K::Prompt],
            CompletionComplete => &[K::Prompt, K::Resource, K::ResourceTemplate],
            LoggingSetLevel | SamplingCreateMessage | ElicitationCreate | RootsList | Custom(_) => {
                &[K::Server]
            }
        }
    }

    /// The list operation and the direct operation it reveals.
    pub fn direct_of_list(&self) -> Option<Operation> {
        use Operation::*;
        match self {
            ToolsList => Some(ToolCall),
            ResourcesList | ResourceTemplatesList => Some(ResourceRead),
            PromptsList => Some(PromptGet),
            _ => None,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// What kind of thing a target names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum TargetKind {
    Tool,
    Resource,
    ResourceTemplate,
    Prompt,
    Server,
}

impl TargetKind {
    pub const ALL: [TargetKind; 5] = [
        TargetKind::Tool,
        TargetKind::Resource,
        TargetKind::ResourceTemplate,
        TargetKind::Prompt,
        TargetKind::Server,
    ];
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Tool => "tool",
            TargetKind::Resource => "resource",
            TargetKind::ResourceTemplate => "resourceTemplate",
            TargetKind::Prompt => "prompt",
            TargetKind::Server => "server",
        }
    }
    pub fn parse(s: &str) -> Option<TargetKind> {
        TargetKind::ALL.into_iter().find(|k| k.name() == s)
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specification_methods_are_known_and_others_are_custom() {
        for m in [
            "initialize",
            "ping",
            "notifications/initialized",
            "tools/call",
            "roots/list",
        ] {
            assert!(Operation::is_spec_method(m), "{m}");
            assert!(!matches!(
                Operation::from_method(m),
                Some(Operation::Custom(_))
            ));
        }
        for m in ["x/y", "tools/call2", ""] {
            assert!(!Operation::is_spec_method(m), "{m}");
            assert_eq!(Operation::from_method(m), Some(Operation::Custom(m.into())));
        }
        assert_eq!(Operation::from_method("ping"), None);
        assert_eq!(
            Operation::from_method("tools/call"),
            Some(Operation::ToolCall)
        );
    }

    #[test]
    fn operation_names_round_trip() {
        for op in KNOWN_OPERATIONS {
            assert_eq!(Operation::parse(&op.name()), Some(op.clone()));
            let i = KNOWN_OPERATIONS.iter().position(|o| *o == op).unwrap();
            assert_eq!(op.bit(), 1 << i);
        }
        assert_eq!(
            Operation::parse("custom:x/y"),
            Some(Operation::Custom("x/y".into()))
        );
        assert_eq!(Operation::parse("custom:"), None);
        assert_eq!(Operation::parse("tools:call"), None);
    }

    #[test]
    fn methods_map_to_operations() {
        assert_eq!(
            Operation::from_method("tools/call"),
            Some(Operation::ToolCall)
        );
        assert_eq!(
            Operation::from_method("resources/unsubscribe"),
            Some(Operation::ResourceSubscribe)
        );
        assert_eq!(Operation::from_method("initialize"), None);
        assert_eq!(Operation::from_method("notifications/cancelled"), None);
        // Other notifications are custom methods: denied unless named by a rule.
        assert_eq!(
            Operation::from_method("notifications/roots/list_changed"),
            Some(Operation::Custom("notifications/roots/list_changed".into()))
        );
        assert_eq!(
            Operation::from_method("tasks/get"),
            Some(Operation::Custom("tasks/get".into()))
        );
    }
}

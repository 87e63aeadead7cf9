//! The NATS subjects of a cluster: `fleethub.{hub}.node.{node_id}.event` (events for one
//! node), `fleethub.{hub}.node.{node_id}.method` (method calls, request/reply) and
//! `fleethub.{hub}.all.event` (revocations, configuration changes, appends and feedback, to every
//! node). Token rules: docs/protocol-notes.md, "NATS: the cluster bus".

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subjects {
    prefix: String,
}

/// A subject token: letters, digits, `-` and `_` as they are, anything else (the `.` of host
/// names and node ids: NATS separates tokens with it) as `~`. Node ids and host names hold no
/// `~`, so two of them never share a token.
fn token(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '~'
            }
        })
        .collect()
}

impl Subjects {
    pub(crate) fn new(hub_name: &str, _node_id: &str) -> Subjects {
        Subjects {
            prefix: format!("fleethub.{}", token(hub_name)),
        }
    }

    pub(crate) fn events(&self, node_id: &str) -> String {
        format!("{}.node.{}.event", self.prefix, token(node_id))
    }

    pub(crate) fn methods(&self, node_id: &str) -> String {
        format!("{}.node.{}.method", self.prefix, token(node_id))
    }

    pub(crate) fn everyone(&self) -> String {
        format!("{}.all.event", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_per_hub_and_node() {
        let s = Subjects::new("hub.example.com", "node-1");
        assert_eq!(
            s.events("node-1"),
            "fleethub.hub~example~com.node.node-1.event"
        );
        assert_eq!(s.methods("n.2"), "fleethub.hub~example~com.node.n~2.method");
        assert_ne!(s.methods("n.2"), s.methods("n_2"));
        assert_eq!(s.everyone(), "fleethub.hub~example~com.all.event");
    }
}

//! Reading the static view files a `von.toml` points at, and the rules that
//! span both files: the agent's member exists in its view, and no two VONs
//! on one host share an ON id.

use std::collections::HashMap;

use crate::error::Origin;
use crate::{AgentConfig, ConfigError, Member, StaticMode, StaticView, VonMode, VonName};

/// The smallest link MTU IPv6 allows (RFC 8200, section 5); below it the
/// kernel turns IPv6 off on the interface.
pub const IPV6_MIN_MTU: u16 = 1280;

/// A static VON as this host sees it: the view and its own entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalView {
    /// The VON's name in `von.toml`.
    pub von: VonName,
    /// The whole view.
    pub view: StaticView,
    /// This host's member in it.
    pub me: Member,
}

impl StaticMode {
    /// Reads the view file and finds this host in it.
    pub fn load_view(&self) -> Result<(StaticView, Member), ConfigError> {
        let view = StaticView::load(&self.view)?;
        let me = find_member(&view, self, &self.view.display().to_string())?;
        Ok((view, me))
    }
}

fn find_member(view: &StaticView, mode: &StaticMode, origin: &str) -> Result<Member, ConfigError> {
    view.member_named(&mode.member).cloned().ok_or_else(|| {
        let names: Vec<&str> = view.members.iter().map(|m| m.name.as_str()).collect();
        Origin(origin).field(
            "member",
            format_args!(
                "no member is named \"{}\", which the agent's static.member names (members: {}; add a [[member]] or fix static.member)",
                mode.member,
                names.join(", ")
            ),
        )
    })
}

impl AgentConfig {
    /// Reads every static VON's view file, finds this host in each, and
    /// checks that no two VONs (static or embedded key manager) share an ON id.
    pub fn load_views(&self) -> Result<Vec<LocalView>, ConfigError> {
        let mut views = Vec::new();
        let mut on_ids = HashMap::new();
        for von in &self.vons {
            let (on_id, origin) = match &von.mode {
                VonMode::Static(mode) => {
                    let (view, me) = mode.load_view()?;
                    let on_id = view.on_id;
                    if let Some(p6) = view.prefix.v6()
                        && von.mtu.bytes() < IPV6_MIN_MTU
                    {
                        return Err(Origin(&mode.view.display().to_string()).field(
                            "prefix",
                            format_args!(
                                "\"{p6}\" makes VON \"{}\" carry IPv6, which needs an inner MTU of at least {IPV6_MIN_MTU} (RFC 8200), but its mtu is {} (raise mtu in its [[von]] table, or drop the IPv6 prefix)",
                                von.name,
                                von.mtu.bytes()
                            ),
                        ));
                    }
                    views.push(LocalView {
                        von: von.name.clone(),
                        view,
                        me,
                    });
                    (on_id, mode.view.display().to_string())
                }
                VonMode::Keymgr(k) => match &k.embedded {
                    Some(e) => (e.on_id, format!("embedded_keymgr of VON \"{}\"", von.name)),
                    None => continue,
                },
            };
            if let Some(first) = on_ids.insert(on_id, von.name.clone()) {
                return Err(Origin(&origin).field(
                    "on_id",
                    format_args!(
                        "{on_id} is also the ON id of VON \"{first}\" on this host (every VON needs its own ON id)"
                    ),
                ));
            }
        }
        Ok(views)
    }
}

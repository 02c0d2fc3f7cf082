//! The kernel's namespace hierarchy as trees: user namespaces by parent, with every other
//! namespace hung under its owning user namespace; pid namespaces by parent.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::discover::{Namespace, NsList};
use crate::handle::NsId;
use crate::NsType;

pub const TREE_SCHEMA: &str = "karton.ns.tree/v1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeNode {
    #[serde(flatten)]
    pub ns: Namespace,
    /// Child namespaces of the same kind (NS_GET_PARENT points here).
    pub children: Vec<TreeNode>,
    /// User trees only: namespaces of other kinds owned by this user namespace.
    pub owned: Vec<Namespace>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsTree {
    pub schema: String,
    /// Roots of the user-namespace tree (normally one: the initial user namespace);
    /// absent when not asked for.
    pub user: Option<Vec<TreeNode>>,
    pub pid: Option<Vec<TreeNode>>,
    /// Namespaces whose owning user namespace is not visible (not placed in `user`).
    pub unowned: Vec<Namespace>,
}

/// Builds the trees asked for (`None` = both).
pub fn build(list: &NsList, only: Option<NsType>) -> NsTree {
    let want_user = only.is_none() || only == Some(NsType::User);
    let want_pid = only.is_none() || only == Some(NsType::Pid);
    let mut unowned = Vec::new();
    let user = want_user.then(|| {
        let users: Vec<&Namespace> = list.namespaces.iter().filter(|n| n.ty == NsType::User).collect();
        let mut owned: HashMap<NsId, Vec<Namespace>> = HashMap::new();
        for n in list.namespaces.iter().filter(|n| n.ty != NsType::User) {
            match n.owner {
                Some(o) if users.iter().any(|u| u.id == o) => owned.entry(o).or_default().push(n.clone()),
                _ => unowned.push(n.clone()),
            }
        }
        forest(&users, &mut owned)
    });
    let pid = want_pid.then(|| {
        let pids: Vec<&Namespace> = list.namespaces.iter().filter(|n| n.ty == NsType::Pid).collect();
        forest(&pids, &mut HashMap::new())
    });
    NsTree { schema: TREE_SCHEMA.to_string(), user, pid, unowned }
}

fn forest(nodes: &[&Namespace], owned: &mut HashMap<NsId, Vec<Namespace>>) -> Vec<TreeNode> {
    let ids: Vec<NsId> = nodes.iter().map(|n| n.id).collect();
    let mut kids: HashMap<NsId, Vec<&Namespace>> = HashMap::new();
    let mut roots = Vec::new();
    for n in nodes {
        match n.parent {
            Some(p) if ids.contains(&p) => kids.entry(p).or_default().push(n),
            _ => roots.push(*n),
        }
    }
    roots.into_iter().map(|r| node(r, &kids, owned, 0)).collect()
}

fn node(
    n: &Namespace,
    kids: &HashMap<NsId, Vec<&Namespace>>,
    owned: &mut HashMap<NsId, Vec<Namespace>>,
    depth: u32,
) -> TreeNode {
    // The kernel caps nesting at 32; the bound only guards against a malformed list.
    let children = if depth < 64 {
        kids.get(&n.id)
            .map(|v| v.iter().map(|c| node(c, kids, owned, depth + 1)).collect())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    TreeNode { ns: n.clone(), children, owned: owned.remove(&n.id).unwrap_or_default() }
}

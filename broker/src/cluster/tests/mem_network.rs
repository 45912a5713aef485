//! An in-memory openraft network (and pre-vote carrier) whose links the
//! test controls: each directed link is up, cut (fails at once), blackholed
//! (no answer until the RPC's timeout) or delayed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use crate::cluster::pre_vote::{self, PreVoteNetwork, PreVoteRequest, PreVoteResponse};
use crate::cluster::types::{Member, NodeId, Raft, TypeConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Link {
    Up,
    Cut,
    Blackhole,
    Delay(Duration),
}

#[derive(Clone, Default)]
pub(super) struct MemRouter {
    state: Arc<Mutex<RouterState>>,
}

#[derive(Default)]
struct RouterState {
    nodes: HashMap<NodeId, Raft>,
    links: HashMap<(NodeId, NodeId), Link>,
}

impl MemRouter {
    pub(super) fn register(&self, id: NodeId, raft: Raft) {
        self.state.lock().unwrap().nodes.insert(id, raft);
    }

    pub(super) fn remove(&self, id: NodeId) {
        self.state.lock().unwrap().nodes.remove(&id);
    }

    pub(super) fn set(&self, from: NodeId, to: NodeId, link: Link) {
        self.state.lock().unwrap().links.insert((from, to), link);
    }

    /// Sets every link between `id` and `others`, both ways.
    pub(super) fn set_around(&self, id: NodeId, others: &[NodeId], link: Link) {
        for &other in others.iter().filter(|&&other| other != id) {
            self.set(id, other, link);
            self.set(other, id, link);
        }
    }

    pub(super) fn heal(&self) {
        self.state.lock().unwrap().links.clear();
    }

    fn link(&self, from: NodeId, to: NodeId) -> Link {
        let state = self.state.lock().unwrap();
        state.links.get(&(from, to)).copied().unwrap_or(Link::Up)
    }

    fn node(&self, id: NodeId) -> Option<Raft> {
        self.state.lock().unwrap().nodes.get(&id).cloned()
    }

    pub(super) fn network(&self, from: NodeId) -> MemNetwork {
        MemNetwork {
            from,
            router: self.clone(),
        }
    }
}

#[derive(Clone)]
pub(super) struct MemNetwork {
    from: NodeId,
    router: MemRouter,
}

impl RaftNetworkFactory<TypeConfig> for MemNetwork {
    type Network = MemClient;

    async fn new_client(&mut self, target: NodeId, _node: &Member) -> MemClient {
        MemClient {
            from: self.from,
            to: target,
            router: self.router.clone(),
        }
    }
}

impl PreVoteNetwork for MemNetwork {
    async fn pre_vote(
        &self,
        target: NodeId,
        _member: Member,
        request: PreVoteRequest,
        ttl: Duration,
    ) -> Result<Option<PreVoteResponse>, String> {
        pass(self.router.link(self.from, target), ttl).await?;
        let raft = self
            .router
            .node(target)
            .ok_or_else(|| format!("node {target} is down"))?;
        let response = pre_vote::answer(&raft, &request).await?;
        pass(self.router.link(target, self.from), ttl).await?;
        Ok(Some(response))
    }
}

pub(super) struct MemClient {
    from: NodeId,
    to: NodeId,
    router: MemRouter,
}

/// Not delivered: the reason, after waiting as the link says.
async fn pass(link: Link, ttl: Duration) -> Result<(), String> {
    match link {
        Link::Up => Ok(()),
        Link::Cut => Err("link cut".into()),
        Link::Blackhole => {
            tokio::time::sleep(ttl).await;
            Err("link blackholed".into())
        }
        Link::Delay(delay) => {
            tokio::time::sleep(delay).await;
            Ok(())
        }
    }
}

fn unreachable<E: std::error::Error>(
    reason: String,
) -> RPCError<NodeId, Member, RaftError<NodeId, E>> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(reason)))
}

impl MemClient {
    /// Runs `call` on the target if both directions let it through.
    async fn deliver<T, E, F, Fut>(
        &self,
        option: &RPCOption,
        call: F,
    ) -> Result<T, RPCError<NodeId, Member, RaftError<NodeId, E>>>
    where
        E: std::error::Error,
        F: FnOnce(Raft) -> Fut,
        Fut: std::future::Future<Output = Result<T, RaftError<NodeId, E>>>,
    {
        let ttl = option.hard_ttl();
        pass(self.router.link(self.from, self.to), ttl)
            .await
            .map_err(unreachable)?;
        let raft = self
            .router
            .node(self.to)
            .ok_or_else(|| unreachable(format!("node {} is down", self.to)))?;
        let response = call(raft)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.to, e)))?;
        // The answer crosses the other direction of the link.
        pass(self.router.link(self.to, self.from), ttl)
            .await
            .map_err(unreachable)?;
        Ok(response)
    }
}

impl RaftNetwork<TypeConfig> for MemClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.deliver(
            &option,
            |raft| async move { raft.append_entries(rpc).await },
        )
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.deliver(
            &option,
            |raft| async move { raft.install_snapshot(rpc).await },
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.deliver(&option, |raft| async move { raft.vote(rpc).await })
            .await
    }
}

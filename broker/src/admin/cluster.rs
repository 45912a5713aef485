//! `/api/cluster`: this node's view of the cluster, and membership changes.
//!
//! - `GET /api/cluster`: node id, role, term, the leader and its client
//!   addresses, members (voter or learner, with their addresses), commit
//!   and applied index, and on the leader each follower's lag. Without
//!   `[cluster]` it answers a standalone document (`"role": "standalone"`),
//!   not 404, so a script can ask any broker.
//! - `POST /api/cluster/members` with `{"id": 4, "cluster": "ip:port",
//!   "stomp": "host:port", "native": "...", "admin": "...", "voter": false}`:
//!   adds a node as a learner (and promotes it once it has caught up when
//!   `voter` is true). The addresses go into the Raft membership entry, so
//!   every node learns them (see `cluster::membership`).
//! - `POST /api/cluster/members/{id}/promote`: a learner becomes a voter.
//! - `DELETE /api/cluster/members/{id}`: removes a node.
//!
//! Changes are made on the leader only; a follower answers 409 with an
//! error naming the leader and a `leader` object (id and addresses). The
//! changes are state-changing routes: `access::guard` asks for group
//! `admins`, refuses cross-site requests and writes the audit line.

use super::error::ApiError;
use super::metrics::Sources;
use crate::cluster::{ClusterNode, LeaderInfo, Member, MembershipError, NodeId};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// How long `POST /api/cluster/members` waits for a new learner to catch
/// up before it answers (202 "still catching up" after that). With two
/// changes of at most `cluster::CHANGE_TIMEOUT` each, the request stays
/// within the endpoint's 30 s limit.
const CATCH_UP_WAIT: Duration = Duration::from_secs(5);

/// `GET /api/cluster`.
pub async fn get(State(src): State<Arc<Sources>>) -> Json<Value> {
    Json(document(&src).await)
}

/// The `/api/cluster` document.
pub async fn document(src: &Sources) -> Value {
    let Some(node) = src.leadership.node() else {
        return standalone(&src.router.config().node);
    };
    let status = node.report().await;
    let mut value = serde_json::to_value(&status).unwrap_or_else(|_| json!({}));
    value["serving"] = json!(src.leadership.role() == "leader");
    value
}

/// A broker without `[cluster]`: the same keys, nothing replicated.
fn standalone(name: &str) -> Value {
    json!({
        "role": "standalone",
        "node": name,
        "cluster_id": null,
        "node_id": null,
        "term": null,
        "leader": null,
        "last_log_index": null,
        "commit_index": null,
        "applied_index": null,
        "members": [],
        "followers": [],
        "serving": true,
    })
}

/// The body of `POST /api/cluster/members`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddRequest {
    id: NodeId,
    cluster: String,
    #[serde(default)]
    stomp: String,
    #[serde(default)]
    stomp_tls: String,
    #[serde(default)]
    websocket: String,
    #[serde(default)]
    websocket_tls: String,
    #[serde(default)]
    native: String,
    #[serde(default)]
    native_tls: String,
    #[serde(default)]
    admin: String,
    #[serde(default)]
    voter: bool,
}

/// `POST /api/cluster/members`.
pub async fn add(
    State(src): State<Arc<Sources>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ClusterError> {
    let node = clustered(&src)?;
    let body = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let req: AddRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "bad request body: {e} (expected {{\"id\": N, \"cluster\": \"ip:port\", \"stomp\": \"host:port\", \"native\": \"host:port\", \"admin\": \"host:port\", \"voter\": false}}; \"stomp_tls\", \"websocket\", \"websocket_tls\" and \"native_tls\" are optional \"host:port\" too)"
            ),
        )
    })?;
    let member = Member {
        cluster: req.cluster,
        stomp: req.stomp,
        stomp_tls: req.stomp_tls,
        websocket: req.websocket,
        websocket_tls: req.websocket_tls,
        native: req.native,
        native_tls: req.native_tls,
        admin: req.admin,
    };
    let added = node.add_learner(req.id, member, CATCH_UP_WAIT).await?;
    let caught_up = added == crate::cluster::Added::CaughtUp;
    let promoted = req.voter && caught_up;
    if promoted {
        node.promote(req.id).await?;
    }
    let status = if req.voter && !caught_up {
        StatusCode::ACCEPTED
    } else {
        StatusCode::CREATED
    };
    let note = match (req.voter, caught_up) {
        (true, false) => format!(
            "added as a learner; it did not catch up within {} s, so it was not promoted: promote it once /api/cluster shows its lag near 0",
            CATCH_UP_WAIT.as_secs()
        ),
        (true, true) => "added and promoted to voter".to_owned(),
        (false, true) => "added as a learner, caught up".to_owned(),
        (false, false) => "added as a learner, still catching up".to_owned(),
    };
    let body = json!({
        "added": req.id,
        "voter": promoted,
        "caught_up": caught_up,
        "note": note,
        "cluster": document(&src).await,
    });
    Ok((status, Json(body)).into_response())
}

/// `POST /api/cluster/members/{id}/promote`.
pub async fn promote(
    State(src): State<Arc<Sources>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ClusterError> {
    let node = clustered(&src)?;
    let id = node_id(&id)?;
    node.promote(id).await?;
    Ok(Json(
        json!({ "promoted": id, "cluster": document(&src).await }),
    ))
}

/// `DELETE /api/cluster/members/{id}`.
pub async fn remove(
    State(src): State<Arc<Sources>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ClusterError> {
    let node = clustered(&src)?;
    let id = node_id(&id)?;
    node.remove(id).await?;
    Ok(Json(
        json!({ "removed": id, "cluster": document(&src).await }),
    ))
}

fn clustered(src: &Sources) -> Result<&ClusterNode, ApiError> {
    src.leadership.node().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "this broker is standalone (no [cluster] table): there is no membership to change",
        )
    })
}

fn node_id(text: &str) -> Result<NodeId, ApiError> {
    match text.parse::<NodeId>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(ApiError::bad_parameter(
            "id",
            format!("`{text}` is not a node id (1 or more)"),
        )),
    }
}

/// A failed cluster call: an API error, or a membership refusal (which, on
/// a follower, also names the leader in a `leader` object).
#[derive(Debug)]
pub enum ClusterError {
    /// Bad request, standalone broker.
    Api(ApiError),
    /// The cluster refused or could not make the change.
    Membership(MembershipError),
}

impl From<ApiError> for ClusterError {
    fn from(e: ApiError) -> Self {
        ClusterError::Api(e)
    }
}

impl From<MembershipError> for ClusterError {
    fn from(e: MembershipError) -> Self {
        ClusterError::Membership(e)
    }
}

/// The HTTP status a membership refusal answers with.
fn status_of(error: &MembershipError) -> StatusCode {
    match error {
        MembershipError::NotLeader { .. } | MembershipError::Conflict(_) => StatusCode::CONFLICT,
        MembershipError::Invalid(_) => StatusCode::BAD_REQUEST,
        MembershipError::NotMember(_) => StatusCode::NOT_FOUND,
        MembershipError::Failed(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn leader_json(leader: &LeaderInfo) -> Value {
    json!({ "id": leader.id, "addresses": leader.addresses })
}

impl IntoResponse for ClusterError {
    fn into_response(self) -> Response {
        match self {
            ClusterError::Api(e) => e.into_response(),
            ClusterError::Membership(e) => {
                let mut body = json!({ "error": e.to_string() });
                if let MembershipError::NotLeader { leader } = &e {
                    body["leader"] = leader.as_deref().map_or(Value::Null, leader_json);
                }
                (status_of(&e), Json(body)).into_response()
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn a_follower_answers_409_naming_the_leader() {
        let leader = LeaderInfo {
            id: 2,
            addresses: Member {
                cluster: "127.0.0.1:61631".into(),
                admin: "127.0.0.1:8162".into(),
                ..Member::default()
            },
        };
        let error = ClusterError::Membership(MembershipError::NotLeader {
            leader: Some(Box::new(leader)),
        });
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
    }

    #[test]
    fn refusals_map_to_their_status() {
        assert_eq!(
            status_of(&MembershipError::Invalid("x".into())),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status_of(&MembershipError::NotMember(9)),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status_of(&MembershipError::Failed("x".into())),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status_of(&MembershipError::NotLeader { leader: None }),
            StatusCode::CONFLICT
        );
    }

    #[test]
    fn node_ids_are_positive_integers() {
        assert_eq!(node_id("4").unwrap(), 4);
        assert!(node_id("0").is_err());
        assert!(node_id("x").is_err());
        assert!(node_id("-1").is_err());
    }

    #[test]
    fn the_standalone_document_has_the_clustered_keys() {
        let doc = standalone("edge-1");
        assert_eq!(doc["role"], "standalone");
        for key in ["node_id", "term", "leader", "members", "commit_index"] {
            assert!(doc.get(key).is_some(), "{key}");
        }
    }
}

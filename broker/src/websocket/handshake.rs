//! The HTTP upgrade of a WebSocket listener: any request path is accepted
//! (stomp.js users write `ws://host:15674/ws`, RabbitMQ's path, but nothing
//! depends on it), and the `Sec-WebSocket-Protocol` is negotiated.

use tokio_tungstenite::tungstenite::handshake::server::{
    Callback, ErrorResponse, Request, Response,
};
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};

/// The STOMP subprotocols, most preferred first (stomp.js offers
/// `v12.stomp, v11.stomp, v10.stomp`). The subprotocol names a transport,
/// not the session's version: CONNECT's `accept-version` still decides that.
pub const SUBPROTOCOLS: [&str; 4] = ["v12.stomp", "v11.stomp", "v10.stomp", "stomp"];

/// What the client asked for, for the connection's log line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The request path (with query, if any).
    pub path: String,
    /// The subprotocol agreed, `None` when the client offered none.
    pub subprotocol: Option<&'static str>,
}

/// The subprotocol to answer with: the most preferred of [`SUBPROTOCOLS`]
/// the client offers. `Ok(None)`: it offered none at all; `Err`: it offered
/// only others (a browser would fail the connection on any answer).
pub fn choose_subprotocol<'a>(
    offers: impl Iterator<Item = &'a str>,
) -> Result<Option<&'static str>, String> {
    let offered: Vec<&str> = offers
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .collect();
    if offered.is_empty() {
        return Ok(None);
    }
    // Subprotocol tokens are case-sensitive (RFC 6455 §4.1): the answer
    // must be one of the client's own spellings.
    SUBPROTOCOLS
        .iter()
        .find(|ours| offered.contains(ours))
        .map(|ours| Some(*ours))
        .ok_or_else(|| {
            format!(
                "unsupported WebSocket subprotocol {}: this broker speaks {}",
                offered.join(", "),
                SUBPROTOCOLS.join(", ")
            )
        })
}

/// The handshake callback: records the path and agreed subprotocol in its
/// [`Upgrade`] and adds the subprotocol to the response, or refuses the
/// upgrade with `400` naming the subprotocols spoken here.
pub struct Negotiation<'a>(pub &'a mut Upgrade);

impl Callback for Negotiation<'_> {
    fn on_request(
        self,
        request: &Request,
        mut response: Response,
    ) -> Result<Response, ErrorResponse> {
        let upgrade = self.0;
        upgrade.path = request.uri().path_and_query().map_or_else(
            || request.uri().path().to_owned(),
            |p| p.as_str().to_owned(),
        );
        let offers = request
            .headers()
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|value| value.to_str().ok());
        match choose_subprotocol(offers) {
            Ok(chosen) => {
                if let Some(name) = chosen {
                    response.headers_mut().insert(
                        header::SEC_WEBSOCKET_PROTOCOL,
                        HeaderValue::from_static(name),
                    );
                }
                upgrade.subprotocol = chosen;
                Ok(response)
            }
            Err(why) => {
                let mut refusal = ErrorResponse::new(Some(why));
                *refusal.status_mut() = StatusCode::BAD_REQUEST;
                Err(refusal)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_offered_version_wins_whatever_the_order() {
        let offers = ["v10.stomp, v11.stomp", "v12.stomp"];
        assert_eq!(
            choose_subprotocol(offers.into_iter()),
            Ok(Some("v12.stomp"))
        );
        assert_eq!(
            choose_subprotocol(["stomp,v10.stomp"].into_iter()),
            Ok(Some("v10.stomp"))
        );
        assert_eq!(choose_subprotocol(["stomp"].into_iter()), Ok(Some("stomp")));
        assert_eq!(
            choose_subprotocol(["mqtt", " v11.stomp "].into_iter()),
            Ok(Some("v11.stomp"))
        );
    }

    #[test]
    fn no_offer_is_accepted_and_foreign_offers_are_refused() {
        assert_eq!(choose_subprotocol(std::iter::empty()), Ok(None));
        assert_eq!(choose_subprotocol([" , "].into_iter()), Ok(None));
        let refused = choose_subprotocol(["mqtt, V12.STOMP"].into_iter());
        let why = refused.expect_err("foreign subprotocols must be refused");
        assert!(why.contains("mqtt, V12.STOMP"), "{why}");
        assert!(
            why.contains("v12.stomp, v11.stomp, v10.stomp, stomp"),
            "{why}"
        );
    }
}

//! Checks a decoded [`Frame`] against the rules protobuf cannot express: a
//! performative must be present, enumerations must hold known values, ranges
//! must be ordered. The codec runs this on every frame it decodes, so the
//! broker's state machines only ever see well-formed performatives.
//!
//! Unknown [`super::ErrorCondition`] values are deliberately accepted (they read
//! as internal-error): refusing a newer peer's Close would hide its reason.

use super::error::NativeError;
use super::frame::{Frame, Performative};
use super::performative::{Role, SettleMode, MIN_MAX_FRAME_SIZE};
use super::transfer::MAX_PRIORITY;

/// Checks one decoded frame; see the module documentation for the rules.
pub fn validate(frame: &Frame) -> Result<(), NativeError> {
    let Some(performative) = &frame.performative else {
        return Err(NativeError::MissingPerformative {
            channel: frame.channel,
        });
    };
    match performative {
        Performative::Open(open) => {
            if open.max_frame_size != 0 && open.max_frame_size < MIN_MAX_FRAME_SIZE {
                return Err(NativeError::MaxFrameSizeTooSmall {
                    announced: open.max_frame_size,
                    minimum: MIN_MAX_FRAME_SIZE,
                });
            }
        }
        Performative::Attach(attach) => {
            known_role("attach", attach.role)?;
            if !SettleMode::is_valid(attach.settle_mode) {
                return Err(invalid(
                    "attach",
                    "settle_mode",
                    format!("unknown settle mode {}", attach.settle_mode),
                ));
            }
        }
        Performative::Transfer(transfer) => {
            let priority = transfer
                .message
                .as_ref()
                .and_then(|m| m.properties.as_ref())
                .and_then(|p| p.priority);
            if let Some(priority) = priority.filter(|p| *p > MAX_PRIORITY) {
                return Err(invalid(
                    "transfer",
                    "priority",
                    format!("{priority} is above the maximum of {MAX_PRIORITY}"),
                ));
            }
        }
        Performative::Disposition(disposition) => {
            known_role("disposition", disposition.role)?;
            if let Some(last) = disposition.last.filter(|last| *last < disposition.first) {
                return Err(invalid(
                    "disposition",
                    "last",
                    format!("{last} is below first ({})", disposition.first),
                ));
            }
        }
        Performative::Begin(_)
        | Performative::End(_)
        | Performative::Detach(_)
        | Performative::Flow(_)
        | Performative::Close(_)
        | Performative::Declare(_)
        | Performative::Discharge(_)
        | Performative::Heartbeat(_) => {}
    }
    Ok(())
}

fn known_role(performative: &'static str, role: i32) -> Result<(), NativeError> {
    if Role::is_valid(role) {
        Ok(())
    } else {
        Err(invalid(
            performative,
            "role",
            format!("unknown role {role}"),
        ))
    }
}

fn invalid(performative: &'static str, field: &'static str, reason: String) -> NativeError {
    NativeError::InvalidField {
        performative,
        field,
        reason,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::native::{Attach, Disposition, Message, Open, Properties, Transfer};

    #[test]
    fn accepts_ordinary_frames() {
        assert_eq!(validate(&Frame::heartbeat()), Ok(()));
        let open = Open {
            max_frame_size: MIN_MAX_FRAME_SIZE,
            ..Open::default()
        };
        assert_eq!(validate(&Frame::new(0, open)), Ok(()));
    }

    #[test]
    fn rejects_rule_breaking_frames() {
        let cases = [
            (Frame::default(), "no known performative"),
            (
                Frame::new(
                    0,
                    Open {
                        max_frame_size: 100,
                        ..Open::default()
                    },
                ),
                "below the minimum",
            ),
            (
                Frame::new(
                    1,
                    Attach {
                        role: 2,
                        ..Attach::default()
                    },
                ),
                "attach.role",
            ),
            (
                Frame::new(
                    1,
                    Attach {
                        settle_mode: -1,
                        ..Attach::default()
                    },
                ),
                "attach.settle_mode",
            ),
            (
                Frame::new(
                    1,
                    Disposition {
                        first: 5,
                        last: Some(4),
                        ..Disposition::default()
                    },
                ),
                "disposition.last",
            ),
            (
                Frame::new(
                    1,
                    Transfer {
                        message: Some(Message {
                            properties: Some(Properties {
                                priority: Some(10),
                                ..Properties::default()
                            }),
                            ..Message::default()
                        }),
                        ..Transfer::default()
                    },
                ),
                "transfer.priority",
            ),
        ];
        for (frame, expected) in cases {
            let err = validate(&frame).expect_err(expected);
            assert!(err.to_string().contains(expected), "{err} vs {expected}");
        }
    }
}

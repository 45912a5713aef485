//! ferromq's native binary protocol: length-prefixed prost frames modelled on AMQP 1.0
//! (connections, sessions, links, credit, settlement). The specification is
//! `protocol/NATIVE.md`; `protocol/native.proto` is the schema as protobuf text.
//!
//! - [`preamble`]: the eight bytes that open a connection, and how to recognise them.
//! - [`frame`]: the [`Frame`] and its [`Performative`].
//! - [`performative`]: Open, Begin, End, Attach, Detach, Flow, Close, Declare,
//!   Discharge, Heartbeat.
//! - [`transfer`]: Transfer with its [`Message`] and [`Properties`], and Disposition.
//! - [`condition`]: [`ErrorCondition`] and the [`ErrorInfo`] sent to a peer.
//! - [`codec`]: [`NativeCodec`], incremental decoding and bounded encoding.
//! - [`lean`]: the Transfer fast path, encoded from borrowed parts; read in place
//!   by [`view`] (a client) and [`inbound`] (a broker: strictly, else decoded normally).
//! - [`mod@validate`]: the rules a decoded frame must follow beyond protobuf's.
//! - [`split`] and [`reassemble`]: messages larger than a frame.
//! - [`stomp_mapping`]: STOMP headers to native properties and back.
//! - [`error`]: the [`NativeError`] type.

pub mod codec;
pub mod condition;
pub mod error;
pub mod frame;
pub mod inbound;
pub mod lean;
pub mod performative;
pub mod preamble;
pub mod reassemble;
pub mod split;
pub mod stomp_mapping;
pub mod transfer;
pub mod validate;
pub mod view;

pub use codec::{encoded_frame_size, NativeCodec, LENGTH_PREFIX_LEN};
pub use condition::{ErrorCondition, ErrorInfo};
pub use error::NativeError;
pub use frame::{Frame, Performative};
pub use performative::{
    Attach, Begin, Close, Declare, Detach, Discharge, End, Flow, Heartbeat, Open, PlainCredentials,
    Role, SettleMode, DEFAULT_MAX_FRAME_SIZE, MIN_MAX_FRAME_SIZE,
};
pub use preamble::{looks_like_native, Preamble, PreambleCheck, ProtocolVersion, MAGIC};
pub use reassemble::Reassembler;
pub use split::{split_transfer, TransferFrames};
pub use stomp_mapping::{message_from_stomp, stomp_headers_from, MappingError};
pub use transfer::{
    Accepted, DeliveryState, Disposition, Message, Modified, Properties, Rejected, Released,
    Transfer, DEFAULT_PRIORITY, MAX_PRIORITY,
};
pub use validate::validate;

//! Reading and writing a store's topics as an application does: consumer groups, idempotent
//! producers, typed topics and their codecs. Everything here is built on `Store` and `Topic`;
//! nothing below (`store`, `log`) knows about it.

#[cfg(feature = "typed")]
pub mod codec;
pub(crate) mod consumer;
pub(crate) mod producer;
#[cfg(feature = "typed")]
pub(crate) mod typed;

pub use crate::consume::consumer::{AckMode, AutoCommit, Consumer, ConsumerOptions, ConsumerStart, StartAt};
pub use crate::consume::producer::Producer;
pub use crate::consume::producer::Sent;
#[cfg(feature = "typed")]
pub use crate::consume::typed::{Typed, TypedConsumer, TypedTopic};

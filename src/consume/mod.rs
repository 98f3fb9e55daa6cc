//! Reading and writing a store's topics as an application does: consumer groups, idempotent
//! producers, typed topics and their codecs. Everything here is built on `Store` and `Topic`;
//! nothing below (`store`, `log`) knows about it.

#[cfg(feature = "typed")]
pub mod codec;
pub(crate) mod consumer;
pub(crate) mod producer;
#[cfg(feature = "typed")]
pub(crate) mod typed;

//! Optional `tracing` spans and events (feature `tracing`). Without the feature the macros
//! expand to nothing, so call sites cost nothing and need no `cfg`.

/// Enters an info-level span until the end of the enclosing block.
#[cfg(feature = "tracing")]
macro_rules! span {
    ($name:literal $(, $($field:tt)*)?) => {
        let _evlog_span = tracing::info_span!($name $(, $($field)*)?).entered();
    };
}

#[cfg(not(feature = "tracing"))]
macro_rules! span {
    ($($anything:tt)*) => {};
}

/// Emits an info-level event.
#[cfg(feature = "tracing")]
macro_rules! event {
    ($($arg:tt)*) => {
        tracing::info!($($arg)*);
    };
}

#[cfg(not(feature = "tracing"))]
macro_rules! event {
    ($($anything:tt)*) => {};
}

pub(crate) use {event, span};

//! One error type for the whole public API; variants a caller can match on.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No GPU adapter matched (or none exists). Set `TUNABLE_CPU=1` to use the CPU executor.
    #[error("no GPU adapter found{0}; install a Vulkan/Metal/DX12 driver (on Linux without a GPU: Mesa's lavapipe, package mesa-vulkan-drivers) or set TUNABLE_CPU=1")]
    NoAdapter(String),
    /// The adapter refused the device or the limits we asked for.
    #[error("could not create a GPU device: {0}")]
    Device(String),
    /// A GPU operation failed validation or ran out of memory (caught with error scopes).
    #[error("GPU error in {context}: {message}")]
    Gpu { context: String, message: String },
    /// A device the application created (`Engine::from_wgpu`) cannot run the kernels: the
    /// message names each limit that is too small, the value it has and the value needed.
    #[error("the GPU device cannot run the kernels: {0}")]
    DeviceLimits(String),
    /// The GPU device was lost (driver reset, removed adapter); create a new Engine.
    #[error("the GPU device was lost: {0}; create a new Engine")]
    DeviceLost(String),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The model file is malformed; the message names the tensor or node.
    #[error("invalid model file: {0}")]
    Format(String),
    /// A tensor in the model is missing, mis-shaped, of an unsupported dtype or not finite.
    #[error("tensor '{name}': {message}")]
    Tensor { name: String, message: String },
    /// The layer graph is inconsistent (missing input, cycle, bad reference).
    #[error("model graph: {0}")]
    Graph(String),
    /// Shapes that do not fit together (image vs model, tensor vs op).
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A level outside the model's range, or a level vector of the wrong length.
    #[error("level: {0}")]
    Level(String),
    /// The image cannot be read, written, or is not usable (empty, too large, wrong channels).
    #[error("image: {0}")]
    Image(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A model or a run over one of the engine's limits (size multiple, receptive field,
    /// channels, memory for one run); the message names the sizes and the limit.
    #[error("over a limit: {0}")]
    Limit(String),
    /// A run produced NaN or infinity (a level far outside what the model was trained for, or
    /// a model whose values overflow); no image is returned.
    #[error("non-finite output: {0}")]
    NonFinite(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Prefixes the message of a shape or graph error with the node it happened in.
    pub fn in_node(self, node: &str) -> Error {
        match self {
            Error::Shape(m) => Error::Shape(format!("node '{node}': {m}")),
            Error::Graph(m) => Error::Graph(format!("node '{node}': {m}")),
            Error::Limit(m) => Error::Limit(format!("node '{node}': {m}")),
            other => other,
        }
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

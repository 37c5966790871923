"""CNN Lab engine: MNIST data, architectures, training, jobs and the run store (no Streamlit here)."""

__version__ = "0.1.0"

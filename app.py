"""Segmentation Attack Explorer — the Gradio app (also the Hugging Face Spaces entry point).

    python app.py                      # http://127.0.0.1:7860, shipped model and sample selected
    EXPLORER_DEVICE=cpu python app.py  # force the CPU (default: CUDA when available)

Set GRADIO_SERVER_NAME=0.0.0.0 / GRADIO_SERVER_PORT to serve elsewhere.  The app itself
lives in :mod:`explorer.ui`; this file only launches it.
"""
from explorer.ui import main

if __name__ == "__main__":
    main()

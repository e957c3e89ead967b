"""The workbench dashboard (Streamlit); run with `make dashboard`."""

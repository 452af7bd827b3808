"""The least a Streamlit page can be: the floor under the dashboard's page-load figures.

``python -m benchmarks.dashboard`` serves this page with the dashboard's own Streamlit options
and opens it in a new tab of the same browser profile as the dashboard's pages (Streamlit's
scripts already cached), timed to the complete page the same way (benchmarks/dashboard.py's
``COMPLETE_JS``): what opening any Streamlit page costs on the machine (page start, websocket,
one script run, drawing) before it shows a single answer.
"""

import streamlit as st

st.set_page_config(page_title="floor", layout="wide")
st.title("Floor")
st.text("A title, one line of text and a button: the least a Streamlit page draws.")
st.download_button("Download", data=b"", file_name="floor.txt", key="floor_done")

"""CNN Lab: `streamlit run app.py`. Routes to the pages; nothing else of substance lives here.

The page scripts live in app_pages/, not pages/: with a pages/ folder beside app.py, a freshly started
Streamlit serves the first session's URL (e.g. a tab reconnecting to /train after a restart) with its
legacy multipage mode, running the page script without this file (no layout, file names in the nav).
"""

import streamlit as st

st.set_page_config(page_title="CNN Lab", page_icon="🧪", layout="wide")

pages = [
    st.Page("app_pages/train.py", title="Train", icon=":material/model_training:", default=True, url_path="train"),
    st.Page("app_pages/draw.py", title="Draw", icon=":material/draw:", url_path="draw"),
    st.Page("app_pages/compare.py", title="Compare", icon=":material/compare_arrows:", url_path="compare"),
    st.Page("app_pages/sweep.py", title="Sweep", icon=":material/tune:", url_path="sweep"),
]
st.navigation(pages).run()

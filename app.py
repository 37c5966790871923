"""CNN Lab: `streamlit run app.py`. Routes to the pages; nothing else of substance lives here.

The page scripts live in app_pages/, not pages/: with a pages/ folder beside app.py, a freshly started
Streamlit serves the first session's URL (e.g. a tab reconnecting to /train after a restart) with its
legacy multipage mode, running the page script without this file (no layout, file names in the nav).

Streamlit serves its default page at "/" only (its own url_path then answers "Page not found"), so
the default page is a hidden one that forwards to /train, keeping the query (`/?run=ID` → `/train?run=ID`):
every page has a URL of its own.
"""

import streamlit as st

from cnnlab import ui

st.set_page_config(page_title="CNN Lab", page_icon="🧪", layout="wide")

train = st.Page("app_pages/train.py", title="Train", icon=":material/model_training:", url_path="train")


def _home() -> None:
    st.switch_page(train, query_params=st.query_params.to_dict())


pages = [
    st.Page(_home, title="CNN Lab", url_path="home", default=True, visibility="hidden"),
    train,
    st.Page("app_pages/draw.py", title="Draw", icon=":material/draw:", url_path="draw"),
    st.Page("app_pages/compare.py", title="Compare", icon=":material/compare_arrows:", url_path="compare"),
    st.Page("app_pages/sweep.py", title="Sweep", icon=":material/tune:", url_path="sweep"),
]
page = st.navigation(pages, position="top")
ui.data_panel()
page.run()

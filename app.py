"""CNN Lab: `streamlit run app.py`. Routes to the pages; nothing else of substance lives here."""

import streamlit as st

st.set_page_config(page_title="CNN Lab", page_icon="🧪", layout="wide")

pages = [
    st.Page("pages/train.py", title="Train", icon="🏋️", default=True, url_path="train"),
    st.Page("pages/draw.py", title="Draw", icon="✏️", url_path="draw"),
    st.Page("pages/compare.py", title="Compare", icon="📊", url_path="compare"),
]
st.navigation(pages).run()

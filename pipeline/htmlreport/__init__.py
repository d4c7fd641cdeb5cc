"""The self-contained HTML report (``pipeline report -o report.html``): ``data`` gathers
plain values from the fleet and the store, ``dag`` draws the merged DAG with Graphviz,
``plots`` draws the charts with plotly (its only importer), ``page`` puts them in one
file that needs no network to view."""

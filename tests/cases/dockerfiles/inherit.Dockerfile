FROM python:3.12-slim AS venv
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
FROM venv AS tools
ENV PATH=/opt/tools/bin:${PATH}
RUN pip install tool
FROM tools
ENV SEEN="$VIRTUAL_ENV"

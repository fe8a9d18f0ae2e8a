# The operator's image, as the chart (image: reliability-center:<appVersion>) and kustomize
# (manifests/default: reliability-center:0.1.0) name it: the same uv.lock as `make setup`, CI and the demo,
# runtime packages only (no test extra), installed with `uv sync --locked` (refused if the lock is stale).
#   docker build -t reliability-center:0.1.0 .
# (No image is built on the development machines: they run no container engine. tests/unit/test_lock.py
# checks that this file, the chart and kustomize name the same lock, uv and version.)
FROM python:3.11-slim
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
COPY src ./src
RUN UV_PROJECT_ENVIRONMENT=/opt/venv UV_PYTHON_DOWNLOADS=never uv sync --locked --no-editable --no-cache \
      --python /usr/local/bin/python3 && rm -rf /src
ENV PATH=/opt/venv/bin:$PATH
USER 65532:65532
ENTRYPOINT ["python", "-m", "reliability_center.operator"]

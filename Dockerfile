# Train (by default the offline quickstart) in a container:
#   docker build -t mobilenet_tf .
#   docker run --rm -v "$PWD/runs:/runs" mobilenet_tf
#   docker run --rm -v "$PWD/runs:/runs" -v /data:/data mobilenet_tf \
#       --flagfile=experiments/imagenette_128.cfg --dataset=folder:/data/imagenette2 --workdir=/runs/nette
FROM python:3.11-slim
WORKDIR /app
COPY setup.cfg pyproject.toml README.md ./
COPY mobilenet_tf ./mobilenet_tf
COPY experiments ./experiments
RUN pip install --no-cache-dir .
ENTRYPOINT ["python", "-m", "mobilenet_tf.train"]
CMD ["--flagfile=experiments/quickstart.cfg", "--workdir=/runs/quickstart"]

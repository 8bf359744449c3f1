# csae-tf on the official TensorFlow GPU image (TensorFlow already installed there).
#   docker build -t csae-tf .
#   docker run --gpus all -v $PWD/runs:/app/runs csae-tf --dataset mnist --output runs/mnist
FROM tensorflow/tensorflow:2.21.0-gpu

WORKDIR /app
COPY setup.py README.md ./
COPY csae_tf ./csae_tf
COPY tuning ./tuning
COPY export ./export
# The image's TensorFlow satisfies the `tensorflow` requirement; pip adds the rest.
RUN pip install --no-cache-dir .

ENTRYPOINT ["python", "-m", "csae_tf.fit"]
CMD ["--help"]

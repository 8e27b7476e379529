FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1
WORKDIR /app
RUN groupadd --system app && useradd --system --gid app app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
ENV WORKER_CONCURRENCY=4
EXPOSE 8000
USER app
HEALTHCHECK --interval=30s CMD ["python", "-c", "import worker; worker.ping()"]
CMD ["python", "-m", "worker"]

"""MLflow's hello world, unchanged: train a classifier on iris, log it, register it, load it back.

Nothing here knows about kiln. Point MLFLOW_TRACKING_URI at a kiln server (or any MLflow
tracking server) and run:

    MLFLOW_TRACKING_URI=http://127.0.0.1:5000 python train.py
"""

import mlflow
from mlflow import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

MODEL_NAME = "iris-classifier"

X, y = load_iris(return_X_y=True, as_frame=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42, stratify=y)

mlflow.set_experiment("iris-demo")

with mlflow.start_run() as run:
    params = {"max_iter": 200, "test_size": 0.2, "random_state": 42}
    model = LogisticRegression(max_iter=params["max_iter"])
    model.fit(X_train, y_train)
    accuracy = accuracy_score(y_test, model.predict(X_test))

    mlflow.log_params(params)
    mlflow.log_metric("test_accuracy", accuracy)
    model_info = mlflow.sklearn.log_model(
        model,
        name="model",
        registered_model_name=MODEL_NAME,
        input_example=X_train.head(5),
    )

client = MlflowClient()
client.set_registered_model_alias(MODEL_NAME, "champion", model_info.registered_model_version)

champion = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
predictions = champion.predict(X_test)
assert (predictions == model.predict(X_test)).all(), "the registered model predicts differently"

print(f"test accuracy: {accuracy:.4f}")
print(f"registered {MODEL_NAME} version {model_info.registered_model_version} as @champion")
print(f"run_id={run.info.run_id}")

"""GET /v1/models and /v1/models/{id}: what is served, in OpenAI's model-card shape."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from limner.serving.state import ServingState, serving_state

router = APIRouter()
State = Annotated[ServingState, Depends(serving_state)]


@router.get("/v1/models")
async def list_models(state: State) -> dict:
    return {"object": "list", "data": [model.card() for model in state.served.values()]}


@router.get("/v1/models/{model_id}")
async def get_model(model_id: str, state: State) -> dict:
    return state.pick_model(model_id, param="model_id").card()

"""Text-generation engines behind one small interface (`Engine`).

- `edgeagent.engines.llamacpp.LlamaCppEngine`: a local GGUF through llama.cpp,
  with KV prefix reuse and batched multi-sequence sampling (students).
- `edgeagent.engines.openai_http.OpenAIEngine`: any OpenAI-compatible server
  over HTTP (teachers).

Import the concrete engines from their modules; this package only re-exports
the light types so `import edgeagent.engines` stays cheap.
"""

from edgeagent.engines.base import Completion, Engine, Message, Timings

__all__ = ["Completion", "Engine", "Message", "Timings"]

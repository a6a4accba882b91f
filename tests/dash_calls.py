"""Hand-made Dash callback requests, as a browser (or anyone with a session cookie) sends
them to /_dash-update-component."""
import json


def dash_post(client, output: str, outputs, inputs, state=()):
    body = {"output": output, "outputs": outputs,
            "inputs": [dict(i) for i in inputs], "state": [dict(s) for s in state],
            "changedPropIds": [f"{json.dumps(i['id'], separators=(',', ':')) if isinstance(i['id'], dict) else i['id']}.{i['property']}"
                               for i in inputs]}
    return client.post("/_dash-update-component", json=body)

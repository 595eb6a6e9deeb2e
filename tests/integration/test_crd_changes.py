"""What a change of a CustomResourceDefinition does to the rest of the server, judged by
the real kubectl and the HTTP API: kubectl's own validation of a List knows the new kind
at once (`/openapi/v2` is built again), and open watches on the kind's objects go on."""

from __future__ import annotations

from tests.integration.conftest import Api, run_kubectl
from tests.integration.test_custom_resources import GROUP, create_crd, widget_crd

LIST = f"""\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {{name: beside}}
  data: {{k: v}}
- apiVersion: {GROUP}/v1
  kind: Widget
  metadata: {{name: listed}}
  spec: {{size: 2, bogus: 1}}
"""


async def test_kubectl_validates_a_new_custom_kind_in_a_list(api: Api) -> None:
    kubeconfig = api.server.write_kubeconfig()
    # kubectl fetches /openapi/v2 before the definition exists (and caches what it can)
    rc, _, err = await run_kubectl(kubeconfig, "apply", "-f", "-",
                                   stdin=LIST.replace(f"{GROUP}/v1", "v1").encode())
    assert rc != 0
    await create_crd(api, widget_crd())
    rc, out, err = await run_kubectl(kubeconfig, "apply", "-f", "-", stdin=LIST.encode())
    assert rc != 0, out
    # kube-apiserver's wording: kubectl checks the item against the published schema
    assert 'unknown field "bogus" in com.example.stable.v1.Widget.spec' in err, err
    code, _ = await api.request("GET", f"/apis/{GROUP}/v1/namespaces/default/widgets/listed")
    assert code == 404  # nothing was sent
    good = LIST.replace(", bogus: 1", "")
    rc, out, err = await run_kubectl(kubeconfig, "apply", "-f", "-", stdin=good.encode())
    assert rc == 0, err
    assert f"widget.{GROUP}/listed created" in out
